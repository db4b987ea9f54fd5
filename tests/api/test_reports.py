"""Reports over the event mirror: a fixed scenario on a contract of its own, every figure worked out by hand.

Scenario (amounts in fen; programme A at 50%, budget ¥1,000,000; programme B at 50%, budget ¥100,000, one day):
  enterprises  E1 software/131000/small, E2 manufacturing/131000/micro, E3 healthcare/410100/medium,
               E4 software/410100/small (issued, never redeems)
  phase 1      issue A: E1 200,000.00  E2 100,000.00  E3 100,000.00  E4 50,000.00;  issue B: E3 30,000.00  E1 20,000.00
               A  P1 <- E1 invoice 100,000.00 intelligent, subsidy 50,000.00
               A  P2 <- E1 invoice  60,000.00 intelligent, subsidy 30,000.00
               B  P2 <- E3 invoice  20,000.00 general,     subsidy 10,000.00   (E3's first-ever redemption)
  -- the chain clock moves 10 days: B has expired; `boundary` is the first second of phase 2 --
  phase 2      A  P1 <- E2 invoice  40,000.00 general,        subsidy 20,000.00 (E2's first-ever redemption)
               A  P3 <- E3 invoice  20,000.00 supercomputing, subsidy 10,000.00
               A  P1 <- E2 invoice  30,000.00 intelligent,    subsidy 12,000.00 (asked for less than 50%)
               revoke A: E4 10,000.00;  reclaim B: E3's 20,000.00 only (E1's 20,000.00 stays expired)
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from sqlmodel import col, func, select

from backend.audit import mirror
from backend.audit.report_competition import competition, flags, hhi, top_share
from backend.audit.report_figures import Attributes, Period, display, economic, social
from backend.models import ChainEvent
from backend.models.states import TxKind
from tests.api.support import Api, Service, _iso, invoice_number
from tests.polling import eventually

pytestmark = pytest.mark.both_databases
DAY = 86400
REPORTS = ("economic", "social", "competition")


@dataclass
class Scenario:
    a: int
    b: int
    boundary: str  # ISO instant between the phases
    enterprises: dict[str, dict[str, Any]]
    providers: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def api(own_contract_service: Service) -> Iterator[Api]:
    with Api(own_contract_service) as client:
        yield client


def _redeem(api: Api, provider: dict[str, Any], enterprise: dict[str, Any], programme: int, **claim: Any) -> None:
    as_provider = api.as_(api.key_for("provider", provider["id"]))
    body = {"enterprise_id": enterprise["id"], "programme_id": programme, "invoice_number": invoice_number(), **claim}
    made = api.ok(as_provider.post("/v1/redemptions", body), 201)
    as_enterprise = api.as_(api.key_for("enterprise", enterprise["id"]))
    assert api.ok(as_enterprise.post(f"/v1/redemptions/{made['id']}/confirm"))["status"] == "confirmed"


@pytest.fixture(scope="module")
def scenario(api: Api) -> Scenario:
    p = {
        "P1": api.provider(categories=["intelligent", "general"]),
        "P2": api.provider(categories=["intelligent", "general"]),
        "P3": api.provider(categories=["supercomputing"]),
    }
    e = {
        "E1": api.enterprise(industry="software", region_code="131000", size="small"),
        "E2": api.enterprise(industry="manufacturing", region_code="131000", size="micro"),
        "E3": api.enterprise(industry="healthcare", region_code="410100", size="medium"),
        "E4": api.enterprise(industry="software", region_code="410100", size="small"),
    }
    everything = ["intelligent", "general", "supercomputing"]
    a = api.programme([x["id"] for x in p.values()], budget=1_000_000_00, cap_per_enterprise=500_000_00,
                      categories=everything)["id"]  # fmt: skip
    b = api.programme([p["P1"]["id"], p["P2"]["id"]], budget=100_000_00, cap_per_enterprise=50_000_00,
                      valid_until=_iso(api.chain_time() + DAY))["id"]  # fmt: skip
    for name, amount in (("E1", 200_000_00), ("E2", 100_000_00), ("E3", 100_000_00), ("E4", 50_000_00)):
        api.fund(e[name], a, amount)
    api.fund(e["E3"], b, 30_000_00)
    api.fund(e["E1"], b, 20_000_00)
    _redeem(api, p["P1"], e["E1"], a, invoice_amount=100_000_00, category="intelligent")
    _redeem(api, p["P2"], e["E1"], a, invoice_amount=60_000_00, category="intelligent")
    _redeem(api, p["P2"], e["E3"], b, invoice_amount=20_000_00, category="general")

    rpc = api.service.ctx.chain.rpc
    rpc.call("evm_increaseTime", [10 * DAY])
    rpc.call("evm_mine", [])
    now = api.chain_time()
    boundary = _iso(now)  # the empty block just mined; phase 2's blocks come after it
    # Consent deadlines use the block follower's cached clock: wait until it has seen the jump.
    eventually(lambda: (api.service.ctx.follower.head_time() or 0) >= now, timeout=10, interval=0.05,
               message="the block follower did not see the jump in time")  # fmt: skip

    _redeem(api, p["P1"], e["E2"], a, invoice_amount=40_000_00, category="general")
    _redeem(api, p["P3"], e["E3"], a, invoice_amount=20_000_00, category="supercomputing")
    _redeem(api, p["P1"], e["E2"], a, invoice_amount=30_000_00, category="intelligent", amount=12_000_00)
    supervisor = api.as_(api.key_for("supervisor"))
    revoke = {"programme_id": a, "enterprise_id": e["E4"]["id"], "amount": 10_000_00, "reason_code": 7}
    api.ok(supervisor.post("/v1/revocations", revoke))
    # The issuer reclaims one holder only, straight on chain: the report must see it from the chain's events.
    ctx = api.service.ctx
    ctx.chain.send(ctx.operators["issuer"], "reclaim", b, [e["E3"]["address"]], kind=TxKind.RECLAIM, ref=str(b))
    return Scenario(a, b, boundary, e, p)


def report(api: Api, name: str, **params: Any) -> dict[str, Any]:
    return api.ok(api.get(f"/v1/reports/{name}", **params))  # type: ignore[no-any-return]


def rows(data: list[dict[str, Any]], key: str = "key") -> dict[str, dict[str, Any]]:
    return {r[key]: {k: v for k, v in r.items() if k != key} for r in data}


# ---------------------------------------------------------------- economic ledger
def test_economic_report_over_all_programmes_matches_the_hand_computed_ledger(api: Api, scenario: Scenario) -> None:
    r = report(api, "economic")
    assert r["totals"] == {
        "subsidy": 132_000_00,  # 50,000 + 30,000 + 10,000 + 20,000 + 10,000 + 12,000
        "invoice_total": 270_000_00,
        "co_payment": 138_000_00,
        "leverage": "1.0455",  # 138/132 = 23/22 = 1.04545…
        "leverage_exact": "23/22",
        "redemptions": 6,
        "issued": 500_000_00,
        "reclaimed": 20_000_00,
        "revoked": 10_000_00,
        "net_issued": 470_000_00,
        "budget": 1_100_000_00,
        "net_issued_utilisation": "0.4273",  # 470/1100 = 47/110 = 0.42727…
        "net_issued_utilisation_exact": "47/110",
        "redeemed_utilisation": "0.1200",
        "redeemed_utilisation_exact": "3/25",
        "expired": 20_000_00,  # B: 50,000 issued - 10,000 redeemed - 20,000 reclaimed
    }
    assert rows(r["by_category"]) == {
        "intelligent": {"category": 0, "invoice_total": 190_000_00, "subsidy": 92_000_00, "co_payment": 98_000_00,
                        "redemptions": 3},
        "general": {"category": 1, "invoice_total": 60_000_00, "subsidy": 30_000_00, "co_payment": 30_000_00,
                    "redemptions": 2},
        "supercomputing": {"category": 2, "invoice_total": 20_000_00, "subsidy": 10_000_00, "co_payment": 10_000_00,
                           "redemptions": 1},
    }  # fmt: skip
    events = {
        "ProgrammeCreated": 2,
        "VoucherIssued": 6,
        "VoucherReclaimed": 1,
        "VoucherRedeemed": 6,
        "VoucherRevoked": 1,
    }
    assert rows(r["events"]) == {name: {"count": n} for name, n in events.items()}
    assert r["meta"]["event_count"] == 16
    assert (r["meta"]["programme_id"], r["meta"]["period_from"], r["meta"]["period_until"]) == (None, None, None)


def test_economic_report_for_one_programme_and_period(api: Api, scenario: Scenario) -> None:
    whole = report(api, "economic", programme_id=scenario.a)["totals"]
    assert (whole["subsidy"], whole["invoice_total"], whole["co_payment"]) == (122_000_00, 250_000_00, 128_000_00)
    assert (whole["leverage"], whole["leverage_exact"]) == ("1.0492", "64/61")
    assert (whole["issued"], whole["revoked"], whole["reclaimed"], whole["net_issued"]) == (
        450_000_00, 10_000_00, 0, 440_000_00)  # fmt: skip
    assert (whole["budget"], whole["net_issued_utilisation_exact"], whole["redeemed_utilisation_exact"]) == (
        1_000_000_00, "11/25", "61/500")  # fmt: skip
    assert whole["expired"] == 0  # A is still open

    phase2 = report(api, "economic", programme_id=scenario.a, **{"from": scenario.boundary})
    assert phase2["meta"]["period_from"] is not None and phase2["meta"]["programme_id"] == scenario.a
    t = phase2["totals"]
    assert (t["subsidy"], t["invoice_total"], t["co_payment"], t["redemptions"]) == (42_000_00, 90_000_00, 48_000_00, 3)
    assert (t["issued"], t["revoked"], t["net_issued"], t["net_issued_utilisation"]) == (0, 10_000_00, -10_000_00,
                                                                                          "-0.0100")  # fmt: skip
    assert rows(phase2["events"]) == {"ProgrammeCreated": {"count": 1}, "VoucherRedeemed": {"count": 3},
                                      "VoucherRevoked": {"count": 1}}  # fmt: skip

    expired = report(api, "economic", programme_id=scenario.b, until=scenario.boundary)["totals"]
    assert (expired["subsidy"], expired["issued"], expired["reclaimed"]) == (10_000_00, 50_000_00, 0)
    assert expired["expired"] == 20_000_00  # expiry is the state at the report's block, whatever the period


# ---------------------------------------------------------------- social ledger
def test_social_report_counts_enterprises_by_industry_region_and_size(api: Api, scenario: Scenario) -> None:
    r = report(api, "social")
    totals = {"enterprises_served": 3, "enterprises_issued": 4, "first_time_users": 3, "subsidy": 132_000_00}
    assert r["totals"] == totals

    def group(served: int, issued: int, first: int, subsidy: int) -> dict[str, int]:
        return {"enterprises_served": served, "enterprises_issued": issued, "first_time_users": first,
                "subsidy": subsidy}  # fmt: skip

    assert rows(r["by_industry"]) == {
        "software": group(1, 2, 1, 80_000_00),  # E1 redeemed, E4 only received
        "manufacturing": group(1, 1, 1, 32_000_00),
        "healthcare": group(1, 1, 1, 20_000_00),  # E3 in A and in B
    }
    assert rows(r["by_region"]) == {"131000": group(2, 2, 2, 112_000_00), "410100": group(1, 2, 1, 20_000_00)}
    assert rows(r["by_size"]) == {
        "small": group(1, 2, 1, 80_000_00),
        "micro": group(1, 1, 1, 32_000_00),
        "medium": group(1, 1, 1, 20_000_00),
    }
    assert [g["key"] for g in r["by_industry"]] == ["software", "manufacturing", "healthcare"]  # by subsidy


def test_first_time_users_are_judged_across_programmes_and_by_period(api: Api, scenario: Scenario) -> None:
    phase1 = report(api, "social", until=scenario.boundary)["totals"]
    assert phase1 == {"enterprises_served": 2, "enterprises_issued": 4, "first_time_users": 2, "subsidy": 90_000_00}
    phase2 = report(api, "social", **{"from": scenario.boundary})["totals"]
    assert phase2 == {"enterprises_served": 2, "enterprises_issued": 0, "first_time_users": 1, "subsidy": 42_000_00}
    # In programme A, phase 2 serves E2 and E3 for the first time, but E3 had already redeemed in programme B.
    a2 = report(api, "social", programme_id=scenario.a, **{"from": scenario.boundary})
    assert (a2["totals"]["enterprises_served"], a2["totals"]["first_time_users"]) == (2, 1)
    assert rows(a2["by_industry"])["manufacturing"]["first_time_users"] == 1
    assert rows(a2["by_industry"])["healthcare"]["first_time_users"] == 0
    # 3 redemptions in the period, plus the first-ever redemption of E3 (in B) that rules it out
    assert rows(a2["events"]) == {"VoucherRedeemed": {"count": 4}}


# ---------------------------------------------------------------- fair competition
def test_competition_report_gives_shares_hhi_and_top3(api: Api, scenario: Scenario) -> None:
    r = report(api, "competition")
    ids = {scenario.providers[n]["id"]: n for n in scenario.providers}
    got = {ids[p["provider_id"]]: p for p in r["providers"]}
    assert [ids[p["provider_id"]] for p in r["providers"]] == ["P1", "P2", "P3"]  # largest first
    assert {n: (p["redeemed"], p["redemptions"], p["share_exact"], p["share"]) for n, p in got.items()} == {
        "P1": (82_000_00, 3, "41/66", "0.6212"),
        "P2": (40_000_00, 2, "10/33", "0.3030"),
        "P3": (10_000_00, 1, "5/66", "0.0758"),
    }
    assert {n: (p["count_share_exact"], p["count_share"]) for n, p in got.items()} == {
        "P1": ("1/2", "0.5000"), "P2": ("1/3", "0.3333"), "P3": ("1/6", "0.1667")}  # fmt: skip
    assert got["P1"]["key"] == scenario.providers["P1"]["address"] and got["P1"]["name"].startswith("Provider")
    # HHI = 10,000 × (82² + 40² + 10²) / 132² = 84,240,000 / 17,424 = 585,000/121
    t = r["totals"]
    assert (t["hhi_exact"], t["hhi"], t["top3_share_exact"], t["top3_share"]) == (
        "585000/121",
        "4834.71",
        "1",
        "1.0000",
    )
    assert (t["redeemed"], t["redemptions"], t["providers"]) == (132_000_00, 6, 3)
    assert (t["hhi_threshold"], t["top3_share_threshold"], t["flagged"]) == ("2500.00", "0.8000", True)
    assert [(f["key"], f["value"], f["threshold"]) for f in r["flags"]] == [
        ("hhi", "4834.71", "2500.00"), ("top3_share", "1.0000", "0.8000")]  # fmt: skip
    assert "4834.71" in r["flags"][0]["reason"] and "100.00%" in r["flags"][1]["reason"]


def test_competition_for_a_programme_and_period(api: Api, scenario: Scenario) -> None:
    r = report(api, "competition", programme_id=scenario.a, until=scenario.boundary)
    assert [(p["redeemed"], p["share_exact"]) for p in r["providers"]] == [(50_000_00, "5/8"), (30_000_00, "3/8")]
    assert (r["totals"]["hhi_exact"], r["totals"]["hhi"]) == ("10625/2", "5312.50")  # 10,000 × (25 + 9) / 64


def test_competition_flag_follows_the_thresholds_in_settings(
    api: Api, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = api.service.ctx.settings
    monkeypatch.setattr(settings, "hhi_threshold", 5000)
    monkeypatch.setattr(settings, "top3_share_threshold", Decimal("1"))
    calm = report(api, "competition")
    assert (calm["totals"]["flagged"], calm["flags"]) == (False, [])  # 4834.71 ≤ 5000; 100% is not above 100%
    monkeypatch.setattr(settings, "hhi_threshold", 4834)
    tight = report(api, "competition")
    assert tight["totals"]["flagged"] and [f["key"] for f in tight["flags"]] == ["hhi"]


# ---------------------------------------------------------------- traceability, CSV, access
def test_reports_state_the_block_the_mirror_is_consistent_with(api: Api, scenario: Scenario) -> None:
    ctx = api.service.ctx
    for name in REPORTS:
        meta = report(api, name)["meta"]
        assert meta["block"] == mirror.sync(ctx) == ctx.chain.rpc.block_number()
        header = ctx.chain.rpc.call("eth_getBlockByNumber", [hex(meta["block"]), False])
        assert meta["block_hash"] == header["hash"]
        assert datetime.fromisoformat(meta["block_time"]) == datetime.fromtimestamp(int(header["timestamp"], 16), UTC)
    names = ("ProgrammeCreated", "VoucherIssued", "VoucherRedeemed", "VoucherReclaimed", "VoucherRevoked")
    with ctx.read() as s:
        mirrored = s.exec(select(func.count()).select_from(ChainEvent).where(col(ChainEvent.name).in_(names))).one()
    assert report(api, "economic")["meta"]["event_count"] == mirrored == 16


def _flatten(body: dict[str, Any]) -> list[dict[str, str]]:
    def cell(v: Any) -> str:
        return "" if v is None else ("true" if v is True else "false" if v is False else str(v))

    out = []
    for section, content in body.items():
        for item in content if isinstance(content, list) else [content]:
            k = item["key"] if isinstance(content, list) else ""
            out += [{"section": section, "key": k, "field": f, "value": cell(v)} for f, v in item.items() if f != "key"]
    return out


@pytest.mark.parametrize("name", REPORTS)
def test_csv_holds_the_same_content_as_json(api: Api, scenario: Scenario, name: str) -> None:
    params = {"programme_id": scenario.a, "from": scenario.boundary}
    body = report(api, name, **params)
    response = api.get(f"/v1/reports/{name}", format="csv", **params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    table = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    assert list(table[0]) == ["section", "key", "field", "value"]
    assert table == _flatten(body)


def test_reports_are_for_staff_only(api: Api, scenario: Scenario) -> None:
    for role in ("admin", "supervisor", "finance", "issuer"):
        as_role = api.as_(api.key_for(role))
        assert all(as_role.get(f"/v1/reports/{n}").status_code == 200 for n in REPORTS), role
    outsiders = [
        api.as_(api.key_for("enterprise", scenario.enterprises["E1"]["id"])),
        api.as_(api.key_for("provider", scenario.providers["P1"]["id"])),
    ]
    for client in outsiders:
        for n in REPORTS:
            response = client.get(f"/v1/reports/{n}")
            assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")


def test_report_parameters_are_checked(api: Api, scenario: Scenario) -> None:
    backwards = api.get("/v1/reports/economic", **{"from": scenario.boundary, "until": "2000-01-01T00:00:00Z"})
    assert (backwards.status_code, backwards.json()["error"]["code"]) == (422, "invalid_input")
    missing = api.get("/v1/reports/social", programme_id=999)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    wrong = api.get("/v1/reports/competition", format="xml")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (422, "invalid_input")


# ---------------------------------------------------------------- pure functions
T0 = datetime(2025, 1, 1, tzinfo=UTC)
_block = iter(range(1, 10**6))


def ev(name: str, *, pid: int = 1, account: str = "", provider: str | None = None, amount: int = 0,
       day: int = 0, **extra: Any) -> ChainEvent:  # fmt: skip
    args = {"programmeId": str(pid), "amount": str(amount), **{k: str(v) for k, v in extra.items()}}
    return ChainEvent(block_number=next(_block), block_hash="0x", block_time=T0 + timedelta(days=day), tx_hash="0x",
                      log_index=0, name=name, programme_id=pid, account=account or None, provider=provider,
                      amount=amount, args=json.dumps(args))  # fmt: skip


def redeemed(account: str, provider: str, amount: int, *, pid: int = 1, day: int = 0) -> ChainEvent:
    return ev("VoucherRedeemed", pid=pid, account=account, provider=provider, amount=amount, day=day,
              invoiceAmount=2 * amount, category=0)  # fmt: skip


def test_hhi_and_top3_without_redemptions_are_zero_and_unflagged() -> None:
    assert (hhi([]), top_share([])) == (Fraction(0), Fraction(0))
    result = competition(
        [], programme_id=None, period=Period(), hhi_threshold=Fraction(1), top_threshold=Fraction(1, 100)
    )
    assert (result.hhi, result.top_share, result.flags, result.providers) == (Fraction(0), Fraction(0), [], [])


def test_one_provider_is_a_monopoly_of_10000() -> None:
    result = competition([redeemed("0xE", "0xP", 7)], programme_id=None, period=Period(),
                         hhi_threshold=Fraction(2500), top_threshold=Fraction(4, 5))  # fmt: skip
    assert (result.hhi, result.top_share) == (Fraction(10_000), Fraction(1))
    assert [f.measure for f in result.flags] == ["hhi", "top3_share"]


def test_hhi_and_top3_are_exact_and_flag_only_above_the_line() -> None:
    assert hhi([1, 1, 1, 1]) == 2500 and top_share([1, 1, 1, 1]) == Fraction(3, 4)
    assert flags(Fraction(2500), Fraction(3, 4), hhi_threshold=Fraction(2500), top_threshold=Fraction(3, 4)) == []
    assert hhi([1, 2]) == Fraction(50_000, 9)  # 10,000 × 5/9
    assert top_share([40, 30, 20, 10]) == Fraction(9, 10)
    over = flags(Fraction(2501), Fraction(3, 4), hhi_threshold=Fraction(2500), top_threshold=Fraction(3, 4))
    assert [(f.measure, f.value) for f in over] == [("hhi", Fraction(2501))]


def test_display_rounds_half_to_even_on_integers() -> None:
    assert [display(Fraction(n, 8), 2) for n in (1, 3, -1)] == ["0.12", "0.38", "-0.12"]
    assert (display(Fraction(2, 3), 4), display(Fraction(1000), 2), display(None, 2)) == ("0.6667", "1000.00", None)


def test_social_reports_unknown_addresses_and_empty_attributes_apart() -> None:
    known = {"0xknown": Attributes("unspecified", "131000", "small")}
    rows_ = [ev("VoucherIssued", account="0xKnown", amount=5), redeemed("0xKnown", "0xP", 3),
             redeemed("0xStranger", "0xP", 4)]  # fmt: skip
    result = social(rows_, programme_id=None, period=Period(), known=known)
    assert {k: (len(g.served), g.subsidy) for k, g in result.groups["industry"].items()} == {
        "unspecified": (1, 3), "unknown": (1, 4)}  # fmt: skip
    assert (len(result.served), len(result.issued), result.subsidy) == (2, 1, 7)


def test_expired_value_is_what_a_closed_programme_still_holds_at_the_block() -> None:
    created = ev("ProgrammeCreated", budget=1000, validUntil=int((T0 + timedelta(days=5)).timestamp()))
    flows = [created, ev("VoucherIssued", account="0xA", amount=100), redeemed("0xA", "0xP", 30, day=1),
             ev("VoucherReclaimed", account="0xA", amount=50, day=6)]  # fmt: skip
    open_ = economic(flows[:3], programme_id=1, period=Period(), at=T0 + timedelta(days=4))
    closed = economic(flows[:3], programme_id=1, period=Period(), at=T0 + timedelta(days=5))
    reclaimed = economic(flows, programme_id=1, period=Period(until=T0 + timedelta(days=2)), at=T0 + timedelta(days=7))
    assert (open_.expired, closed.expired, reclaimed.expired, reclaimed.reclaimed) == (0, 70, 20, 0)
