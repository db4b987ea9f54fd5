"""Finding: a transaction sent with a managed key (or the admin key) outside the service advanced the key's nonce
behind the service's back, and the next request on that key failed with 502. The pipeline now answers the
node's "nonce too low" by reading the chain's count, signing the same call again and sending it once more."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, col, select

from backend.models import ChainTx, Redemption
from backend.services.context import Context
from tests.api.support import Api, Service

pytestmark = pytest.mark.both_databases
Y = 100  # fen per yuan


@pytest.fixture(scope="module")
def service(own_contract_service: Service) -> Service:
    return own_contract_service


def send_outside(ctx: Context, address: str) -> None:
    """A call of the ledger's `paused()`, signed with the managed key but sent straight to the node."""
    chain = ctx.chain
    nonce = chain.rpc.pending_nonce(address)
    tx = {"to": chain.address, "value": 0, "data": "0x5c975abb", "gas": 40_000, "gasPrice": 0, "nonce": nonce,
          "chainId": chain.chain_id}  # fmt: skip
    raw, tx_hash = ctx.keys.sign_transaction(address, tx)
    chain.rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
    assert ctx.follower.wait_blocking(tx_hash, 10.0) is not None  # mined before the service signs with the key again


def stored_rows(ctx: Context, signer: str) -> list[ChainTx]:
    with Session(ctx.engine) as s:
        return list(s.exec(select(ChainTx).where(ChainTx.signer == signer).order_by(col(ChainTx.nonce))).all())


def test_redemption_succeeds_first_time_after_the_provider_key_was_used_outside(api: Api) -> None:
    ctx = api.service.ctx
    provider, enterprise = api.provider(), api.enterprise()
    pid = api.programme([provider["id"]])["id"]
    api.fund(enterprise, pid, 10_000 * Y)
    assert api.redeem(provider, enterprise, pid, 2_000 * Y)["status"] == "confirmed"  # the service knows the key
    send_outside(ctx, provider["address"])

    done: dict[str, Any] = api.redeem(provider, enterprise, pid, 4_000 * Y)
    assert done["status"] == "confirmed", done
    assert ctx.chain.balance(enterprise["address"], pid) == 7_000 * Y
    # the stored transaction was replaced by its re-signed successor, and the claim names the one that was mined
    rows = stored_rows(ctx, provider["address"])
    assert [r.status for r in rows] == ["confirmed", "confirmed"]
    assert rows[1].nonce == rows[0].nonce + 2  # the outside transaction took the nonce in between
    with Session(ctx.engine) as s:
        claim = s.get(Redemption, done["id"])
        assert claim is not None and claim.tx_hash == rows[1].tx_hash
    receipt = ctx.chain.rpc.receipt(rows[1].tx_hash)
    assert receipt is not None and int(receipt["status"], 16) == 1


def test_registration_succeeds_first_time_after_the_admin_key_was_used_outside(api: Api) -> None:
    ctx = api.service.ctx
    admin = ctx.operators["admin"]
    api.enterprise()  # the service has used the admin key: its next nonce is known to it
    for _ in range(2):  # more than one nonce spent elsewhere
        send_outside(ctx, admin)
    before = api.service.tx_count("register")

    created = api.enterprise()
    assert int(ctx.chain.call("participant", created["address"])[0]) == 1
    assert api.service.tx_count("register") == before + 1  # the same row, re-signed: never a second transaction
    last = stored_rows(ctx, admin)[-1]
    assert (last.kind, last.status, last.nonce) == ("register", "confirmed", ctx.chain.rpc.latest_nonce(admin) - 1)
