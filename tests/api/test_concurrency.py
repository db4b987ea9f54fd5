"""Many providers redeeming at once: nonces stay in order, nothing is burnt twice, database equals chain."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlmodel import Session, col, select

from backend.models import ChainTx, Redemption
from tests.api.support import Api, invoice_number

pytestmark = pytest.mark.both_databases

PROVIDERS, ENTERPRISES, CLAIMS = 20, 20, 200


def test_200_concurrent_redemptions_from_20_providers(api: Api) -> None:
    providers = [api.provider() for _ in range(PROVIDERS)]
    enterprises = [api.enterprise() for _ in range(ENTERPRISES)]
    programme = api.programme([p["id"] for p in providers])
    for e in enterprises:
        api.fund(e, programme["id"], 100_000_00)
    as_provider = [api.as_(api.key_for("provider", p["id"])) for p in providers]
    as_enterprise = [api.as_(api.key_for("enterprise", e["id"])) for e in enterprises]

    def claim(i: int) -> dict[str, Any]:
        body = {
            "enterprise_id": enterprises[i % ENTERPRISES]["id"],
            "programme_id": programme["id"],
            "invoice_number": invoice_number(),
            "invoice_amount": 1_000_00 + i,
            "category": "intelligent",
        }
        return api.ok(as_provider[i % PROVIDERS].post_alone("/v1/redemptions", body), 201)  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=50) as pool:
        claims = list(pool.map(claim, range(CLAIMS)))
    # Each provider's key signs 10 burns at the same moment: the nonce reservation is what is under test.
    by_enterprise = {e["id"]: client for e, client in zip(enterprises, as_enterprise, strict=True)}

    def confirm(c: dict[str, Any]) -> Any:
        return by_enterprise[c["enterprise_id"]].post_alone(f"/v1/redemptions/{c['id']}/confirm")

    with ThreadPoolExecutor(max_workers=CLAIMS) as pool:
        responses = list(pool.map(confirm, claims))
    failures = [r.text for r in responses if r.status_code != 200]
    assert failures == []
    confirmed = [r.json() for r in responses]
    assert all(c["status"] == "confirmed" for c in confirmed)
    assert len({c["tx_hash"] for c in confirmed}) == CLAIMS

    ctx = api.service.ctx
    with Session(ctx.engine) as s:
        txs = s.exec(
            select(ChainTx).where(ChainTx.kind == "redeem", col(ChainTx.ref).in_([str(c["id"]) for c in claims]))
        ).all()
        rows = s.exec(select(Redemption).where(Redemption.programme_id == programme["id"])).all()
    assert len(txs) == CLAIMS and all(t.status == "confirmed" for t in txs)  # one transaction per claim
    per_signer: dict[str, list[int]] = {}
    for t in txs:
        per_signer.setdefault(t.signer, []).append(t.nonce)
    for nonces in per_signer.values():  # no gaps, no reuse
        assert sorted(nonces) == list(range(min(nonces), min(nonces) + len(nonces)))

    # Database and chain agree on every balance and on the programme's totals.
    redeemed_by: dict[int, int] = {}
    for r in rows:
        assert r.status == "confirmed"
        redeemed_by[r.enterprise_id] = redeemed_by.get(r.enterprise_id, 0) + r.amount
    for e in enterprises:
        assert ctx.chain.balance(e["address"], programme["id"]) == 100_000_00 - redeemed_by[e["id"]]
    state = ctx.chain.programme(programme["id"])
    assert state.redeemed == sum(r.amount for r in rows)
    burns = _redeemed_events(api, programme["id"])
    assert len(burns) == CLAIMS and len({b.args["invoiceHash"] for b in burns}) == CLAIMS


def _redeemed_events(api: Api, programme_id: int) -> list[Any]:
    chain = api.service.ctx.chain
    topics = [chain.events.topic("VoucherRedeemed"), "0x" + programme_id.to_bytes(32, "big").hex()]
    logs = chain.rpc.call(
        "eth_getLogs", [{"address": chain.address, "fromBlock": "0x0", "toBlock": "latest", "topics": topics}]
    )
    return [ev for ev in (chain.events.decode(log) for log in logs) if ev is not None]
