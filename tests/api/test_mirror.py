"""The event mirror ends equal to the chain: after a restart mid-stream, after reorgs of depth 1-3 and a node
that went back behind it, and with transactions the service never saw."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from sqlmodel import select

from backend.audit import logdecode, mirror
from backend.chain import logscan
from backend.chain.deploy import admin_account
from backend.models import ChainEvent, MirrorBlock
from backend.services.context import Context
from backend.services.wiring import build_context
from tests.api.support import Api, Service
from tests.support import node_web3, raw_transaction

pytestmark = pytest.mark.both_databases


@pytest.fixture(scope="module")
def api(own_contract_service: Service) -> Iterator[Api]:
    with Api(own_contract_service) as client:
        yield client


def chain_logs(ctx: Context) -> list[tuple[int, int, str, str]]:
    contract = ctx.chain.deployment.voucher
    head = ctx.chain.rpc.block_number()
    logs = [log for r in logscan.scan(ctx.chain.rpc, contract.address, contract.deploy_block, head) for log in r.logs]
    return [(int(x["blockNumber"], 16), int(x["logIndex"], 16), x["blockHash"], x["transactionHash"]) for x in logs]


def mirrored(ctx: Context) -> list[tuple[int, int, str, str]]:
    with ctx.read() as s:
        rows = s.exec(select(ChainEvent).order_by(ChainEvent.block_number, ChainEvent.log_index)).all()  # type: ignore[arg-type]
    return [(r.block_number, r.log_index, r.block_hash, r.tx_hash) for r in rows]


def assert_mirror_equals_chain(ctx: Context) -> None:
    block = mirror.sync(ctx)
    assert block == ctx.chain.rpc.block_number()
    expected, got = chain_logs(ctx), mirrored(ctx)
    assert got == expected, f"mirror has {len(got)} events, the chain {len(expected)}"


def registration_tx(ctx: Context, data_dir: Any, *, nonce_back: int = 0) -> tuple[str, str]:
    """(raw transaction, account): the admin key registering a new participant, signed outside the service."""
    w3 = node_web3(ctx.chain.deployment.rpc_url, ctx.settings.data_dir)
    admin = admin_account(data_dir)
    contract = w3.eth.contract(address=ctx.chain.address, abi=ctx.chain.deployment.voucher.abi)
    account = Account.create().address
    nonce = w3.eth.get_transaction_count(admin.address, "pending") - nonce_back
    raw = raw_transaction(admin, contract.functions.registerParticipant(account, 1, os.urandom(32)), nonce=nonce,
                          gas=200_000)  # fmt: skip
    return "0x" + raw.hex(), str(account)


def outside_registration(ctx: Context, data_dir: Any) -> str:
    """The admin key registers a participant straight on the node: the service never sees the transaction."""
    raw, account = registration_tx(ctx, data_dir)
    tx_hash = ctx.chain.rpc.call("eth_sendRawTransaction", [raw])
    receipt = ctx.follower.wait_blocking(tx_hash, 30)
    assert receipt is not None and receipt["status"] == "0x1"
    return account


def test_the_mirror_holds_every_event_with_its_block_and_transaction(api: Api) -> None:
    ctx = api.service.ctx
    provider = api.provider()
    enterprise = api.enterprise()
    programme = api.programme([provider["id"]])
    api.fund(enterprise, programme["id"], 50_000_00)
    assert_mirror_equals_chain(ctx)
    with ctx.read() as s:
        issued = s.exec(select(ChainEvent).where(ChainEvent.name == "VoucherIssued")).one()
    assert issued.account == enterprise["address"]
    assert issued.programme_id == programme["id"]
    assert issued.amount == 50_000_00
    assert issued.block_time.year >= 2024


def test_events_the_service_did_not_cause_are_mirrored(api: Api) -> None:
    ctx = api.service.ctx
    account = outside_registration(ctx, api.service.data_dir)
    assert_mirror_equals_chain(ctx)
    with ctx.read() as s:
        row = s.exec(select(ChainEvent).where(ChainEvent.account == account)).one()
    assert row.name == "ParticipantRegistered"


def test_voucher_events_decoded_from_the_hex_are_stored_as_the_abi_decoder_would(api: Api) -> None:
    ctx = api.service.ctx
    provider, enterprise = api.provider(), api.enterprise()
    programme = api.programme([provider["id"]])
    api.fund(enterprise, programme["id"], 50_000_00)
    api.redeem(provider, enterprise, programme["id"], 10_000_00)
    contract = ctx.chain.deployment.voucher
    head = ctx.chain.rpc.block_number()
    logs = [log for r in logscan.scan(ctx.chain.rpc, contract.address, contract.deploy_block, head) for log in r.logs]
    fast = mirror.decode_logs(ctx.chain.events, logs)
    generic = [d for d in (ctx.chain.events.decode(raw) for raw in logs) if d is not None]
    assert [mirror._row(d, 0) for d in fast] == [mirror._row(d, 0) for d in generic]
    assert [d.address for d in fast] == [d.address for d in generic]
    sliced = {d.name for d in fast} & set(logdecode.LAYOUTS)  # the rest (registrations, roles) went the ABI way
    assert sliced >= {"TransferSingle", "ProgrammeCreated", "VoucherIssued", "VoucherRedeemed"}
    assert {d.name for d in fast} - sliced >= {"ParticipantRegistered", "RoleGranted"}


def test_a_restart_mid_stream_resumes_from_the_checkpoint_without_duplicates(api: Api) -> None:
    service = api.service
    for _ in range(4):
        outside_registration(service.ctx, service.data_dir)
    # A second service process on the same database: the mirror cleared, then stopped after its first range.
    fresh = service.ctx.settings.model_copy(update={"database_url": service.ctx.settings.database_url})
    first = build_context(fresh)
    try:
        with first.write() as s:  # forget what the module's service mirrored: start over from the deployment
            for row in s.exec(select(ChainEvent)).all():
                s.delete(row)
            for mark in s.exec(select(MirrorBlock)).all():
                s.delete(mark)
            s.commit()
        contract = first.chain.deployment.voucher
        head = first.chain.rpc.block_number()
        chunk = next(logscan.scan(first.chain.rpc, contract.address, contract.deploy_block, head, step=3))
        mirror._store(first, chunk)  # one range stored, then the process "dies"
        stored = len(mirrored(first))
        assert 0 < stored < len(chain_logs(first))
    finally:
        first.close()
    restarted = build_context(fresh)
    try:
        assert_mirror_equals_chain(restarted)
    finally:
        restarted.close()


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_reorg_rolls_the_mirror_back_and_reapplies(api: Api, depth: int) -> None:
    ctx = api.service.ctx
    lost = [outside_registration(ctx, api.service.data_dir) for _ in range(depth)]  # one block each (automine)
    assert_mirror_equals_chain(ctx)
    # anvil replaces the last `depth` blocks with others holding another registration from the same nonce.
    raw, kept = registration_tx(ctx, api.service.data_dir, nonce_back=depth)
    ctx.chain.rpc.call("anvil_reorg", [depth, [[raw, 0]]])
    assert_mirror_equals_chain(ctx)
    with ctx.read() as s:
        accounts = set(s.exec(select(ChainEvent.account)).all())
    assert not accounts & set(lost)
    assert kept in accounts


def test_a_node_that_went_back_behind_the_mirror_is_followed_down(api: Api) -> None:
    ctx = api.service.ctx
    rpc = ctx.chain.rpc
    mirror.sync(ctx)
    snapshot = rpc.call("evm_snapshot")
    for _ in range(3):
        outside_registration(ctx, api.service.data_dir)
    mirror.sync(ctx)
    assert rpc.call("evm_revert", [snapshot]) is True  # head now below the mirror's checkpoint
    assert_mirror_equals_chain(ctx)
