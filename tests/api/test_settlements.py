"""Settlement batches over HTTP: a provider submits its confirmed redemptions of a period, finance approves (the
batch's digest is anchored on chain) or returns it; the exports match the anchor; a redemption is settled once."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_utils.crypto import keccak
from sqlmodel import Session, col, select

from backend.models import SettlementClaim
from backend.services.monitor import sweep
from backend.services.settlement_document import CSV_COLUMNS
from backend.services.settlements import SETTLEMENT_TAG
from tests.api.support import Api, Funded, Service, _iso, funded, mining_stopped
from tests.factory import ServiceFactory

pytestmark = pytest.mark.both_databases


@pytest.fixture(scope="module")
def service(services: ServiceFactory, database_url: str) -> Iterator[Service]:
    # Automine answers within milliseconds; a short wait lets the late-anchor test see a 202 quickly.
    yield from services.serve("settlements", database_url=database_url, receipt_wait_s=3.0)


@dataclass
class Parties(Funded):
    as_finance: Api
    since: int  # chain time before any of this provider's redemptions

    def period(self, until: int | None = None) -> dict[str, Any]:
        end = self.api.chain_time() + 1 if until is None else until
        return {"provider_id": self.provider["id"], "period_from": _iso(self.since), "period_until": _iso(end)}

    def submit(self, as_: Api | None = None, **period: Any) -> Any:
        return (as_ or self.as_provider).post("/v1/settlements", self.period() | period)


@pytest.fixture
def parties(api: Api) -> Parties:
    world = funded(api, amount=200_000_00)
    return Parties(**vars(world), as_finance=api.as_(api.key_for("finance")), since=api.chain_time())


def _code(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def _csv(text: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The CSV export's lines (as dicts) and its name,value summary after the blank row."""
    rows = list(csv.reader(io.StringIO(text)))
    blank = rows.index([])
    lines = [dict(zip(rows[0], r, strict=True)) for r in rows[1:blank]]
    return lines, {name: value for name, value in rows[blank + 1 :]}


def test_provider_submits_and_finance_approval_anchors_the_json_export(api: Api, parties: Parties) -> None:
    first, second = parties.redeem(20_000_00), parties.redeem(30_000_00)
    batch = api.ok(parties.submit(), 201)
    assert (batch["status"], batch["provider_id"], batch["created_by_role"]) == (
        "submitted",
        parties.provider["id"],
        "provider",
    )
    assert (batch["line_count"], batch["subsidy_total"], batch["invoice_total"]) == (2, 25_000_00, 50_000_00)
    line = batch["lines"][0]
    assert line == {
        "redemption_id": first["id"],
        "enterprise": {k: parties.enterprise[k] for k in ("id", "name", "credit_code")},
        "programme_id": parties.programme["id"],
        "invoice_number": first["invoice_number"],
        "invoice_hash": first["invoice_hash"],
        "invoice_amount": 20_000_00,
        "category": "intelligent",
        "subsidy_amount": 10_000_00,
        "redemption_tx_hash": first["tx_hash"],
        "redemption_block": first["block_number"],
    }
    assert [x["redemption_id"] for x in batch["lines"]] == [first["id"], second["id"]]

    approved = api.ok(parties.as_finance.post(f"/v1/settlements/{batch['id']}/approve"))
    assert approved["status"] == "approved" and approved["decided_at"] is not None
    assert approved["anchor_tx_hash"].startswith("0x") and approved["anchor_block"] > 0

    export = parties.as_provider.get(f"/v1/settlements/{batch['id']}/export", format="json")
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/json")
    digest = "0x" + keccak(export.content).hex()
    assert digest == batch["digest"] == approved["digest"] == export.headers["x-settlement-digest"]
    document = export.json()
    assert document["lines"] == batch["lines"]
    assert document["totals"] == {"line_count": 2, "subsidy_total": 25_000_00, "invoice_total": 50_000_00}
    assert document["settlement_id"] == batch["id"] and document["provider"]["id"] == parties.provider["id"]

    chain = api.service.ctx.chain
    block = chain.rpc.call("eth_getBlockByNumber", [hex(approved["anchor_block"]), False])
    assert chain.call("anchoredAt", bytes.fromhex(digest[2:])) == int(block["timestamp"], 16)
    receipt = chain.rpc.receipt(approved["anchor_tx_hash"])
    assert receipt is not None and int(receipt["blockNumber"], 16) == approved["anchor_block"]
    events = [ev for ev in map(chain.events.decode, receipt["logs"]) if ev is not None]
    assert [(ev.name, ev.args) for ev in events] == [
        (
            "HashAnchored",
            {"digest": digest, "kind": "0x" + SETTLEMENT_TAG.hex(), "by": api.service.ctx.operators["finance"]},
        )
    ]


def test_csv_export_holds_the_same_lines_and_totals_and_carries_the_digest(api: Api, parties: Parties) -> None:
    for amount in (10_000_00, 12_345_67, 7_000_01):
        parties.redeem(amount)
    batch = api.ok(parties.submit(), 201)
    api.ok(parties.as_finance.post(f"/v1/settlements/{batch['id']}/approve"))
    response = parties.as_finance.get(f"/v1/settlements/{batch['id']}/export", format="csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers["x-settlement-digest"] == batch["digest"]
    lines, summary = _csv(response.content.decode("utf-8-sig"))
    assert [list(x) for x in lines] == [list(CSV_COLUMNS)] * 3
    expected = [
        {
            **{k: str(v) for k, v in line.items() if k != "enterprise"},
            **{f"enterprise_{k}": str(v) for k, v in line["enterprise"].items()},
        }
        for line in batch["lines"]
    ]
    assert lines == expected
    assert summary["line_count"] == "3"
    assert summary["subsidy_total"] == str(batch["subsidy_total"]) == str(sum(int(x["subsidy_amount"]) for x in lines))
    assert summary["invoice_total"] == str(batch["invoice_total"]) == str(sum(int(x["invoice_amount"]) for x in lines))
    assert summary["digest"] == batch["digest"]


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_neutralised(api: Api, parties: Parties) -> None:
    # Invoice numbers are digits and letters; an enterprise's name is free text, and the export carries it.
    name = f'=HYPERLINK("http://x","{uuid.uuid4().hex}")'
    enterprise = api.enterprise(name=name)
    api.fund(enterprise, parties.programme["id"], 100_000_00)
    as_enterprise = api.as_(api.key_for("enterprise", enterprise["id"]))
    replace(parties, enterprise=enterprise, as_enterprise=as_enterprise).redeem()
    batch = api.ok(parties.submit(), 201)
    assert batch["lines"][0]["enterprise"]["name"] == name  # the JSON document keeps the name as registered
    response = parties.as_provider.get(f"/v1/settlements/{batch['id']}/export", format="csv")
    lines, _ = _csv(response.content.decode("utf-8-sig"))
    assert lines[0]["enterprise_name"] == "'" + name


def test_frozen_provider_is_neither_settled_nor_approved(api: Api, parties: Parties) -> None:
    parties.redeem()
    batch = api.ok(parties.submit(), 201)
    parties.redeem()
    supervisor = api.as_(api.key_for("supervisor"))
    api.ok(supervisor.post(f"/v1/participants/{parties.provider['id']}/freeze", {"reason_code": 3}))
    assert _code(parties.submit(parties.as_finance)) == (409, "account_frozen")
    assert _code(parties.as_finance.post(f"/v1/settlements/{batch['id']}/approve")) == (409, "account_frozen")
    assert api.ok(api.get(f"/v1/settlements/{batch['id']}"))["status"] == "submitted"


def test_a_redemption_enters_only_one_batch(api: Api, parties: Parties) -> None:
    first = parties.redeem()
    batch = api.ok(parties.submit(), 201)
    assert _code(parties.submit(parties.as_finance)) == (409, "settlement_period_empty")
    later = parties.redeem()
    second = api.ok(parties.submit(parties.as_finance), 201)
    assert [x["redemption_id"] for x in second["lines"]] == [later["id"]]
    assert second["created_by_role"] == "finance"
    assert [x["redemption_id"] for x in api.ok(api.get(f"/v1/settlements/{batch['id']}"))["lines"]] == [first["id"]]


def test_concurrent_batch_creations_give_each_redemption_to_exactly_one(api: Api, parties: Parties) -> None:
    redeemed = {parties.redeem(5_000_00)["id"] for _ in range(3)}
    body = parties.period()
    callers = [parties.as_provider, parties.as_finance] * 4
    with ThreadPoolExecutor(max_workers=len(callers)) as pool:
        responses = list(pool.map(lambda c: c.post("/v1/settlements", body, key=str(uuid.uuid4())), callers))
    created = [r.json() for r in responses if r.status_code == 201]
    assert len(created) == 1, [r.text for r in responses]
    assert sorted(_code(r) for r in responses if r.status_code != 201) == [(409, "settlement_period_empty")] * 7
    assert {x["redemption_id"] for x in created[0]["lines"]} == redeemed
    with Session(api.service.ctx.engine) as s:
        claims = s.exec(select(SettlementClaim).where(col(SettlementClaim.redemption_id).in_(redeemed))).all()
    assert {(c.redemption_id, c.batch_id) for c in claims} == {(r, created[0]["id"]) for r in redeemed}


def test_returned_batch_frees_its_redemptions_and_keeps_its_lines(api: Api, parties: Parties) -> None:
    redeemed = [parties.redeem()["id"] for _ in range(2)]
    batch = api.ok(parties.submit(), 201)
    returned = api.ok(
        parties.as_finance.post(f"/v1/settlements/{batch['id']}/return", {"reason": "invoice copies missing"})
    )
    assert (returned["status"], returned["return_reason"]) == ("returned", "invoice copies missing")
    again = api.ok(parties.submit(), 201)
    assert [x["redemption_id"] for x in again["lines"]] == redeemed and again["id"] != batch["id"]
    assert again["digest"] != batch["digest"]
    kept = api.ok(parties.as_provider.get(f"/v1/settlements/{batch['id']}"))
    assert (kept["status"], [x["redemption_id"] for x in kept["lines"]]) == ("returned", redeemed)
    approve = parties.as_finance.post(f"/v1/settlements/{batch['id']}/approve")
    assert _code(approve) == (409, "settlement_already_returned")


def test_provider_cannot_see_or_create_another_providers_batch(api: Api, parties: Parties) -> None:
    parties.redeem()
    batch = api.ok(parties.submit(), 201)
    other = api.provider()
    as_other = api.as_(api.key_for("provider", other["id"]))
    for path in (f"/v1/settlements/{batch['id']}", f"/v1/settlements/{batch['id']}/export"):
        assert _code(as_other.get(path)) == (404, "not_found")
        assert _code(as_other.get(path.replace(str(batch["id"]), "999999"))) == (404, "not_found")
    assert api.ok(as_other.get("/v1/settlements")) == []
    assert api.ok(as_other.get("/v1/settlements", provider_id=parties.provider["id"])) == []
    assert _code(parties.submit(as_other)) == (404, "not_found")
    mine = api.ok(parties.as_provider.get("/v1/settlements"))
    assert [b["id"] for b in mine] == [batch["id"]] and "lines" not in mine[0]
    seen_by_finance = api.ok(parties.as_finance.get("/v1/settlements", provider_id=parties.provider["id"]))
    assert [b["id"] for b in seen_by_finance] == [batch["id"]]


def test_enterprise_issuer_and_provider_cannot_approve_or_return(api: Api, parties: Parties) -> None:
    parties.redeem()
    batch = api.ok(parties.submit(), 201)
    before = api.service.tx_count("settlement_anchor")
    for caller in (parties.as_enterprise, api.issuer(), parties.as_provider):
        assert _code(caller.post(f"/v1/settlements/{batch['id']}/approve")) == (403, "forbidden")
        assert _code(caller.post(f"/v1/settlements/{batch['id']}/return", {"reason": "no"})) == (403, "forbidden")
    assert _code(parties.submit(parties.as_enterprise)) == (403, "forbidden")
    assert api.ok(api.get(f"/v1/settlements/{batch['id']}"))["status"] == "submitted"
    assert api.service.tx_count("settlement_anchor") == before


def test_approve_twice_and_return_after_approval_are_refused(api: Api, parties: Parties) -> None:
    parties.redeem()
    batch = api.ok(parties.submit(), 201)
    before = api.service.tx_count("settlement_anchor")
    approved = api.ok(parties.as_finance.post(f"/v1/settlements/{batch['id']}/approve"))
    again = parties.as_finance.post(f"/v1/settlements/{batch['id']}/approve")
    assert _code(again) == (409, "settlement_already_approved")
    assert again.json()["error"]["details"] == {"status": "approved"}
    back = parties.as_finance.post(f"/v1/settlements/{batch['id']}/return", {"reason": "too late"})
    assert _code(back) == (409, "settlement_already_approved")
    assert api.service.tx_count("settlement_anchor") == before + 1
    assert api.ok(api.get(f"/v1/settlements/{batch['id']}")) == approved


def test_repeated_approve_with_one_key_returns_the_first_result_and_sends_once(api: Api, parties: Parties) -> None:
    parties.redeem()
    batch = api.ok(parties.submit(), 201)
    before = api.service.tx_count("settlement_anchor")
    path, key = f"/v1/settlements/{batch['id']}/approve", str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda _: parties.as_finance.post(path, key=key), range(4)))
    responses = [*concurrent, parties.as_finance.post(path, key=key)]
    assert [r.status_code for r in responses] == [200] * 5
    assert len({r.text for r in responses}) == 1 and responses[0].json()["status"] == "approved"
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 4
    assert api.service.tx_count("settlement_anchor") == before + 1


def test_empty_period_is_refused(api: Api, parties: Parties) -> None:
    assert _code(parties.submit()) == (409, "settlement_period_empty")
    parties.redeem()
    until = parties.since  # a period that ended before the redemption's block
    response = parties.submit(period_from=_iso(until - 3600), period_until=_iso(until))
    assert _code(response) == (409, "settlement_period_empty")
    assert _code(parties.submit(period_until=_iso(parties.since))) == (422, "invalid_input")


def test_period_is_judged_by_block_time(api: Api, parties: Parties) -> None:
    early = parties.redeem()
    rpc = api.service.ctx.chain.rpc
    rpc.call("evm_increaseTime", [120])
    rpc.call("evm_mine", [])
    boundary = api.chain_time()
    late = parties.redeem()
    first = api.ok(parties.submit(period_until=_iso(boundary)), 201)
    assert [x["redemption_id"] for x in first["lines"]] == [early["id"]]
    second = api.ok(parties.submit(period_from=_iso(boundary)), 201)
    assert [x["redemption_id"] for x in second["lines"]] == [late["id"]]


def test_late_anchor_is_completed_by_the_monitor(api: Api, parties: Parties) -> None:
    parties.redeem()
    batch = api.ok(parties.submit(), 201)
    with mining_stopped(api):
        pending = parties.as_finance.post(f"/v1/settlements/{batch['id']}/approve")
        assert pending.status_code == 202 and pending.json()["status"] == "approving"
        busy = parties.as_finance.post(f"/v1/settlements/{batch['id']}/return", {"reason": "changed my mind"})
        assert _code(busy) == (409, "settlement_approval_in_progress")
    assert sweep(api.service.ctx, older_than_s=0) >= 1
    done = api.ok(api.get(f"/v1/settlements/{batch['id']}"))
    assert (done["status"], done["anchor_tx_hash"]) == ("approved", pending.json()["anchor_tx_hash"])
    chain = api.service.ctx.chain
    assert chain.call("anchoredAt", bytes.fromhex(batch["digest"][2:])) > 0
