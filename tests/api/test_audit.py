"""The supervisors' audit trail and reconciliation, over real HTTP, on a contract of this module's own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from tests.api.support import Api, Service

pytestmark = pytest.mark.both_databases
Y = 100  # fen per yuan


@pytest.fixture(scope="module")
def service(own_contract_service: Service) -> Service:
    return own_contract_service


@pytest.fixture(scope="module")
def world(api: Api) -> dict[str, Any]:
    """Two enterprises, two providers, one programme at 50%: issuance, two redemptions, a revocation."""
    p1, p2 = api.provider(), api.provider()
    e1, e2 = api.enterprise(), api.enterprise()
    programme = api.programme([p1["id"], p2["id"]])
    pid = programme["id"]
    api.fund(e1, pid, 100_000 * Y)
    api.fund(e2, pid, 50_000 * Y)
    r1 = api.redeem(p1, e1, pid, 40_000 * Y)
    r2 = api.redeem(p2, e2, pid, 10_000 * Y)
    supervisor = api.as_(api.key_for("supervisor"))
    body = {"programme_id": pid, "enterprise_id": e2["id"], "amount": 1_000 * Y, "reason_code": 3}
    api.ok(supervisor.post("/v1/revocations", body))
    return {"p1": p1, "p2": p2, "e1": e1, "e2": e2, "pid": pid, "r1": r1, "r2": r2, "supervisor": supervisor}


def all_events(client: Api, **params: Any) -> list[dict[str, Any]]:
    page = client.ok(client.get("/v1/audit/events", **params))
    return page["events"]  # type: ignore[no-any-return]


def test_events_filter_by_enterprise_provider_programme_and_type(api: Api, world: dict[str, Any]) -> None:
    sup = world["supervisor"]
    mine = all_events(sup, enterprise_id=world["e1"]["id"])
    assert {e["event"] for e in mine} >= {"ParticipantRegistered", "VoucherIssued", "VoucherRedeemed"}
    assert all(e["account"] == world["e1"]["address"] for e in mine)
    redeemed = all_events(sup, provider_id=world["p2"]["id"], event="VoucherRedeemed")
    assert [(e["amount"], e["tx_hash"]) for e in redeemed] == [(5_000 * Y, world["r2"]["tx_hash"])]
    assert redeemed[0]["block_number"] == world["r2"]["block_number"]
    assert redeemed[0]["args"]["invoiceAmount"] == str(10_000 * Y)
    issued = all_events(sup, programme_id=world["pid"], event="VoucherIssued")
    assert sorted(e["amount"] for e in issued) == [50_000 * Y, 100_000 * Y]
    revoked = all_events(sup, event="VoucherRevoked")
    assert [(e["account"], e["amount"], e["args"]["reasonCode"]) for e in revoked] == [
        (world["e2"]["address"], 1_000 * Y, "3")
    ]


def test_events_filter_by_block_and_time_range(api: Api, world: dict[str, Any]) -> None:
    sup = world["supervisor"]
    block = world["r2"]["block_number"]
    at_block = all_events(sup, from_block=block, to_block=block)
    assert {e["event"] for e in at_block} == {"VoucherRedeemed", "TransferSingle"}
    assert {e["tx_hash"] for e in at_block} == {world["r2"]["tx_hash"]}
    time = at_block[0]["block_time"]
    everything = all_events(sup, limit=1000)
    later = all_events(sup, since=time, limit=1000)  # blocks of the same second share a time
    assert [e for e in everything if e["block_time"] >= time] == later
    assert {e["id"] for e in everything if e["block_number"] >= block} <= {e["id"] for e in later}
    before = all_events(sup, until=time, limit=1000)
    assert [e for e in everything if e["block_time"] < time] == before
    assert len(before) + len(later) == len(everything)


def test_pages_cover_every_event_once(api: Api, world: dict[str, Any]) -> None:
    sup = world["supervisor"]
    everything = all_events(sup, limit=1000)
    seen: list[int] = []
    after = 0
    while True:
        page = sup.ok(sup.get("/v1/audit/events", limit=3, after=after))
        seen += [e["id"] for e in page["events"]]
        assert page["block"] >= everything[-1]["block_number"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == [e["id"] for e in everything]
    assert api.get("/v1/audit/events", limit=0).status_code == 422


def test_statements_per_enterprise_and_provider(api: Api, world: dict[str, Any]) -> None:
    sup = world["supervisor"]
    s1 = sup.ok(sup.get(f"/v1/audit/enterprises/{world['e1']['id']}/statement"))
    assert s1["programmes"] == [
        {"programme_id": world["pid"], "issued": 100_000 * Y, "redeemed": 20_000 * Y, "reclaimed": 0, "revoked": 0,
         "migrated_in": 0, "migrated_out": 0, "balance": 80_000 * Y}
    ]  # fmt: skip
    s2 = sup.ok(sup.get(f"/v1/audit/enterprises/{world['e2']['id']}/statement"))
    assert s2["programmes"][0]["revoked"] == 1_000 * Y
    assert s2["programmes"][0]["balance"] == 44_000 * Y
    balance = api.ok(api.get(f"/v1/enterprises/{world['e2']['id']}/balances"))
    assert [b["balance"] for b in balance if b["programme_id"] == world["pid"]] == [44_000 * Y]
    p1 = sup.ok(sup.get(f"/v1/audit/providers/{world['p1']['id']}/statement"))
    assert p1["programmes"] == [
        {"programme_id": world["pid"], "redemptions": 1, "subsidy": 20_000 * Y, "invoices": 40_000 * Y,
         "subsidy_by_category": {"intelligent": 20_000 * Y}}
    ]  # fmt: skip


def test_participants_see_their_own_statement_only(api: Api, world: dict[str, Any]) -> None:
    e1 = api.as_(api.key_for("enterprise", world["e1"]["id"]))
    assert e1.ok(e1.get(f"/v1/audit/enterprises/{world['e1']['id']}/statement"))["address"] == world["e1"]["address"]
    assert e1.get(f"/v1/audit/enterprises/{world['e2']['id']}/statement").status_code == 404
    assert e1.get("/v1/audit/events").status_code == 403
    assert e1.get("/v1/audit/reconciliation").status_code == 403
    p1 = api.as_(api.key_for("provider", world["p1"]["id"]))
    assert p1.ok(p1.get(f"/v1/audit/providers/{world['p1']['id']}/statement"))["provider_id"] == world["p1"]["id"]
    assert p1.get(f"/v1/audit/providers/{world['p2']['id']}/statement").status_code == 404
    assert api.as_(api.key_for("issuer")).get("/v1/audit/reconciliation").status_code == 403


def reconciliation(api: Api) -> dict[str, Any]:
    return api.ok(api.get("/v1/audit/reconciliation"))  # type: ignore[no-any-return]


def test_a_clean_ledger_reconciles(api: Api, world: dict[str, Any]) -> None:
    report = reconciliation(world["supervisor"])
    assert report["differences"] == []
    assert report["checked"]["balances"] >= 2
    assert report["checked"]["programmes"] == 1
    assert report["checked"]["redemptions"] == 2


@pytest.fixture
def planted(api: Api) -> Iterator[Any]:
    """Runs SQL behind the service's back; the next statement given undoes it."""
    undo: list[str] = []

    def plant(change: str, restore: str) -> None:
        with api.service.ctx.engine.begin() as conn:
            conn.execute(text(change))
        undo.append(restore)

    yield plant
    with api.service.ctx.engine.begin() as conn:
        for statement in undo:
            conn.execute(text(statement))
    assert reconciliation(api)["differences"] == []


def test_a_balance_changed_in_the_database_is_reported(api: Api, world: dict[str, Any], planted: Any) -> None:
    e1 = world["e1"]["id"]
    planted(
        f"UPDATE application SET approved_amount = approved_amount + 1 WHERE enterprise_id = {e1}",
        f"UPDATE application SET approved_amount = approved_amount - 1 WHERE enterprise_id = {e1}",
    )
    diffs = reconciliation(api)["differences"]
    balance = [d for d in diffs if d["kind"] == "balance"]
    assert balance == [
        {"kind": "balance", "subject": {"address": world["e1"]["address"], "enterprise_id": e1,
         "programme_id": world["pid"]}, "service": 80_000 * Y + 1, "mirror": 80_000 * Y, "chain": 80_000 * Y}
    ]  # fmt: skip
    issued = [d for d in diffs if d["kind"] == "programme" and d["subject"]["field"] == "issued"]
    assert [(d["service"], d["mirror"], d["chain"]) for d in issued] == [(150_000 * Y + 1, 150_000 * Y, 150_000 * Y)]


def test_a_programme_term_changed_in_the_database_is_reported(api: Api, world: dict[str, Any], planted: Any) -> None:
    pid = world["pid"]
    planted(f"UPDATE programme SET budget = budget * 2 WHERE id = {pid}",
            f"UPDATE programme SET budget = budget / 2 WHERE id = {pid}")  # fmt: skip
    diffs = reconciliation(api)["differences"]
    assert [(d["kind"], d["subject"]) for d in diffs] == [("programme", {"programme_id": pid, "field": "budget"})]
    assert diffs[0]["service"] == 2 * diffs[0]["chain"] and diffs[0]["mirror"] == diffs[0]["chain"]


def test_a_redemption_status_changed_in_the_database_is_reported(api: Api, world: dict[str, Any], planted: Any) -> None:
    rid = world["r1"]["id"]
    planted(f"UPDATE redemption SET status = 'failed' WHERE id = {rid}",
            f"UPDATE redemption SET status = 'confirmed' WHERE id = {rid}")  # fmt: skip
    diffs = reconciliation(api)["differences"]
    redemption = [d for d in diffs if d["kind"] == "redemption"]
    assert len(redemption) == 1
    assert redemption[0]["subject"]["redemption_id"] == rid
    assert redemption[0]["service"]["status"] == "failed"
    assert redemption[0]["mirror"] == {"tx_hash": world["r1"]["tx_hash"], "amount": 20_000 * Y}
    assert redemption[0]["chain"] == {"redeemed": True}
    assert {d["kind"] for d in diffs} == {"redemption", "balance", "programme"}  # its burn no longer counted


def test_a_mirror_row_changed_behind_the_indexer_is_reported(api: Api, world: dict[str, Any], planted: Any) -> None:
    tx = world["r2"]["tx_hash"]
    planted(f"UPDATE chainevent SET amount = amount + 5, args = replace(args, '\"amount\":\"500000\"', "
            f"'\"amount\":\"500005\"') WHERE tx_hash = '{tx}' AND name = 'VoucherRedeemed'",
            f"UPDATE chainevent SET amount = amount - 5, args = replace(args, '\"amount\":\"500005\"', "
            f"'\"amount\":\"500000\"') WHERE tx_hash = '{tx}' AND name = 'VoucherRedeemed'")  # fmt: skip
    diffs = reconciliation(api)["differences"]
    balance = [d for d in diffs if d["kind"] == "balance"]
    assert [(d["service"], d["mirror"], d["chain"]) for d in balance] == [(44_000 * Y, 44_000 * Y - 5, 44_000 * Y)]
    assert any(d["kind"] == "redemption" and d["mirror"]["amount"] == 500005 for d in diffs)
