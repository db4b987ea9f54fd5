"""Key rotation over HTTP: a participant moves to a new managed key and nothing is lost on the way."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from backend.models import FormerAddress
from backend.services.context import Context
from tests.api.support import Api, Service

pytestmark = pytest.mark.both_databases

ENTERPRISE, PROVIDER = 1, 2


@pytest.fixture(scope="module")
def service(own_contract_service: Service) -> Service:
    return own_contract_service  # reconciliation covers the whole chain: this module's alone


def rotate(api: Api, participant_id: int, key: str | None = None) -> Any:
    return api.post(f"/v1/participants/{participant_id}/rotate-key", key=key)


def account(ctx: Context, address: str) -> tuple[int, bool]:
    kind, frozen = ctx.chain.call("participant", address)
    return int(kind), bool(frozen)


def rotation_rows(ctx: Context) -> list[FormerAddress]:
    with ctx.read() as s:
        return list(s.exec(select(FormerAddress)).all())


def migrated_events(ctx: Context, tx_hash: str) -> list[dict[str, Any]]:
    receipt = ctx.chain.rpc.receipt(tx_hash)
    assert receipt is not None
    decoded = (ctx.chain.events.decode(log) for log in receipt["logs"])
    return [d.args for d in decoded if d is not None and d.name == "VoucherMigrated"]


def test_enterprise_rotation_moves_every_balance_and_cap_to_the_new_key(api: Api) -> None:
    ctx = api.service.ctx
    provider = api.provider()
    p1 = api.programme([provider["id"]], cap_per_enterprise=1_000_000_00)["id"]
    p2 = api.programme([provider["id"]], cap_per_enterprise=500_000_00)["id"]
    enterprise = api.enterprise()
    api.fund(enterprise, p1, 600_000_00)
    api.fund(enterprise, p2, 300_000_00)
    assert api.redeem(provider, enterprise, p1, 200_000_00)["status"] == "confirmed"  # 50%: ¥100,000 burnt
    assert api.redeem(provider, enterprise, p2, 20_000_00)["status"] == "confirmed"
    old = enterprise["address"]
    before = {pid: ctx.chain.balance(old, pid) for pid in (p1, p2)}
    assert before == {p1: 500_000_00, p2: 290_000_00}

    body = api.ok(rotate(api, enterprise["id"], key="rotate-enterprise"))
    new = body["new_address"]
    assert (body["participant_id"], body["address"], body["status"]) == (enterprise["id"], old, "retired")
    assert new != old and body["retired_at"] is not None
    assert api.ok(api.get(f"/v1/participants/{enterprise['id']}"))["address"] == new

    assert {pid: ctx.chain.balance(new, pid) for pid in (p1, p2)} == before
    assert {pid: ctx.chain.balance(old, pid) for pid in (p1, p2)} == {p1: 0, p2: 0}
    assert [int(ctx.chain.call("issuedTo", pid, new)) for pid in (p1, p2)] == [600_000_00, 300_000_00]
    assert [int(ctx.chain.call("issuedTo", pid, old)) for pid in (p1, p2)] == [0, 0]
    assert account(ctx, old) == (ENTERPRISE, True)
    assert account(ctx, new) == (ENTERPRISE, False)
    events = migrated_events(ctx, body["migration_tx"])
    assert sorted((e["programmeId"], e["from"].lower(), e["to"].lower(), e["amount"]) for e in events) == [
        (p1, old.lower(), new.lower(), 500_000_00),
        (p2, old.lower(), new.lower(), 290_000_00),
    ]

    repeat = rotate(api, enterprise["id"], key="rotate-enterprise")
    assert repeat.headers.get("Idempotent-Replayed") == "true"
    assert api.ok(repeat) == body

    # The new key signs the consent; the old one could not (it is frozen).
    assert api.redeem(provider, enterprise, p1, 100_000_00)["status"] == "confirmed"
    assert ctx.chain.balance(new, p1) == 450_000_00
    # The cap came along: ¥300,000 of programme 2's ¥500,000 was issued before the rotation.
    mine = api.as_(api.key_for("enterprise", enterprise["id"]))
    app = api.ok(mine.post("/v1/applications", {"programme_id": p2, "amount": 300_000_00, "purpose": "more"}), 201)
    refused = api.issuer().post(f"/v1/applications/{app['id']}/approve", {})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "cap_exceeded"
    assert refused.json()["error"]["details"]["available"] == 200_000_00
    api.ok(api.issuer().post(f"/v1/applications/{app['id']}/approve", {"amount": 200_000_00}))
    assert ctx.chain.balance(new, p2) == 490_000_00


def test_provider_rotation_keeps_its_programmes_and_related_parties(api: Api) -> None:
    ctx = api.service.ctx
    provider = api.provider()
    pid = api.programme([provider["id"]])["id"]
    enterprise, related = api.enterprise(), api.enterprise()
    api.fund(enterprise, pid, 100_000_00)
    api.ok(
        api.post(
            "/v1/related-parties", {"enterprise_id": related["id"], "provider_id": provider["id"], "related": True}
        )
    )

    body = api.ok(rotate(api, provider["id"]))
    new = body["new_address"]
    assert body["migration_tx"] is None  # providers hold no vouchers
    assert account(ctx, provider["address"]) == (PROVIDER, True)
    assert account(ctx, new) == (PROVIDER, False)
    assert ctx.chain.call("isProgrammeProvider", pid, new) is True
    assert ctx.chain.call("isRelatedParty", related["address"], new) is True
    assert api.redeem(provider, enterprise, pid, 50_000_00)["status"] == "confirmed"  # sent by the new key


def test_related_party_declaration_follows_a_rotated_enterprise(api: Api) -> None:
    ctx = api.service.ctx
    provider, enterprise = api.provider(), api.enterprise()
    api.ok(
        api.post(
            "/v1/related-parties", {"enterprise_id": enterprise["id"], "provider_id": provider["id"], "related": True}
        )
    )
    new = api.ok(rotate(api, enterprise["id"]))["new_address"]
    assert ctx.chain.call("isRelatedParty", new, provider["address"]) is True


def test_rotation_interrupted_part_way_is_finished_by_repeating_it(api: Api) -> None:
    ctx = api.service.ctx
    provider = api.provider()
    pid = api.programme([provider["id"]])["id"]
    enterprise = api.enterprise()
    api.fund(enterprise, pid, 70_000_00)
    supervisor = api.as_(api.key_for("supervisor"))
    api.ok(supervisor.post("/v1/pause"))
    try:
        stopped = rotate(api, enterprise["id"], key="rotate-paused")
        assert stopped.status_code == 503, stopped.text
        error = stopped.json()["error"]
        assert error["code"] == "rotation_interrupted" and error["details"]["cause"] == "ledger_paused"
        # The steps before the move are done and stay done: the old key frozen, the new one registered.
        assert account(ctx, enterprise["address"]) == (ENTERPRISE, True)
        assert api.ok(api.get(f"/v1/participants/{enterprise['id']}"))["address"] == enterprise["address"]
    finally:
        api.ok(api.post("/v1/unpause"))
    before = api.service.tx_count()
    body = api.ok(rotate(api, enterprise["id"], key="rotate-paused"))
    assert api.service.tx_count() == before + 1  # only the move itself: nothing done before is sent again
    assert ctx.chain.balance(body["new_address"], pid) == 70_000_00
    assert ctx.chain.balance(enterprise["address"], pid) == 0


def test_supervisor_freeze_survives_a_rotation(api: Api) -> None:
    ctx = api.service.ctx
    enterprise = api.enterprise()
    supervisor = api.as_(api.key_for("supervisor"))
    api.ok(supervisor.post(f"/v1/participants/{enterprise['id']}/freeze", {"reason_code": 3}))
    new = api.ok(rotate(api, enterprise["id"]))["new_address"]
    assert account(ctx, new) == (ENTERPRISE, True)
    assert api.ok(supervisor.post(f"/v1/participants/{enterprise['id']}/unfreeze"))["address"] == new
    assert account(ctx, new) == (ENTERPRISE, False)


@pytest.mark.parametrize("role", ["issuer", "finance", "supervisor", "enterprise", "provider"])
def test_only_admin_may_rotate_keys(api: Api, role: str) -> None:
    enterprise = api.enterprise()
    owner = enterprise["id"] if role == "enterprise" else api.provider()["id"] if role == "provider" else None
    response = api.as_(api.key_for(role, owner)).post(f"/v1/participants/{enterprise['id']}/rotate-key")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert account(api.service.ctx, enterprise["address"]) == (ENTERPRISE, False)


def test_rotating_an_unknown_participant_is_not_found(api: Api) -> None:
    response = rotate(api, 999_999)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_reconciliation_finds_no_difference_after_rotations(api: Api) -> None:
    former = {r.address for r in rotation_rows(api.service.ctx)}
    assert former  # the retired keys are checked too: they belong to their participant and hold nothing
    report = api.ok(api.get("/v1/audit/reconciliation"))
    assert report["differences"] == []
    assert report["checked"]["balances"] >= len(former)


def test_statement_shows_the_rotated_enterprise_balances(api: Api) -> None:
    ctx = api.service.ctx
    provider = api.provider()
    pid = api.programme([provider["id"]])["id"]
    enterprise = api.enterprise()
    api.fund(enterprise, pid, 80_000_00)
    api.redeem(provider, enterprise, pid, 20_000_00)
    new = api.ok(rotate(api, enterprise["id"]))["new_address"]
    statement = api.ok(api.get(f"/v1/audit/enterprises/{enterprise['id']}/statement"))
    assert statement["address"] == new
    balances = {h["programme_id"]: h["balance"] for h in statement["programmes"]}
    assert balances == {pid: ctx.chain.balance(new, pid)} == {pid: 70_000_00}
    [holding] = statement["programmes"]
    assert (holding["issued"], holding["redeemed"]) == (80_000_00, 10_000_00)  # history from before the rotation
    assert holding["migrated_in"] == holding["migrated_out"] == 70_000_00  # old key to new: the balance is kept
    trail = api.ok(api.get("/v1/audit/events", enterprise_id=enterprise["id"], limit=1000))["events"]
    assert {e["account"] for e in trail} == {enterprise["address"], new}
    assert {"VoucherIssued", "VoucherRedeemed", "VoucherMigrated"} <= {e["event"] for e in trail}


def test_a_rotated_provider_keeps_its_redemptions_in_its_statement(api: Api) -> None:
    provider, enterprise = api.provider(), api.enterprise()
    pid = api.programme([provider["id"]])["id"]
    api.fund(enterprise, pid, 50_000_00)
    api.redeem(provider, enterprise, pid, 20_000_00)
    api.ok(rotate(api, provider["id"]))
    api.redeem(provider, enterprise, pid, 10_000_00)  # with the new key
    statement = api.ok(api.get(f"/v1/audit/providers/{provider['id']}/statement"))
    assert [(p["redemptions"], p["subsidy"]) for p in statement["programmes"]] == [(2, 15_000_00)]
    redeemed = api.ok(api.get("/v1/audit/events", provider_id=provider["id"], event="VoucherRedeemed"))["events"]
    assert len({e["provider"] for e in redeemed}) == 2
