"""Applications over HTTP: enterprises apply, issuers approve (issuing on chain, alone or in one all-or-nothing
batch) or reject with a reason; budget, cap, expiry and freezing are refused before any transaction; pausing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from backend.models.states import TxKind
from tests.api.support import Api, _iso, invoice_number

pytestmark = pytest.mark.both_databases


def _refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    return response.json()["error"]  # type: ignore[no-any-return]


@dataclass
class Applicant:
    enterprise: dict[str, Any]
    as_: Api

    def apply(self, programme_id: int, amount: int, purpose: str = "model training") -> httpx.Response:
        return self.as_.post("/v1/applications", {"programme_id": programme_id, "amount": amount, "purpose": purpose})


@pytest.fixture(scope="module")
def provider(api: Api) -> dict[str, Any]:
    return api.provider()


@pytest.fixture(scope="module")
def issuer(api: Api) -> Api:
    return api.issuer()


@pytest.fixture
def applicant(api: Api) -> Applicant:
    return _applicant(api)


def _applicant(api: Api) -> Applicant:
    e = api.enterprise()
    return Applicant(e, api.as_(api.key_for("enterprise", e["id"])))


def _pending(api: Api, who: Applicant, programme_id: int, amount: int) -> dict[str, Any]:
    return api.ok(who.apply(programme_id, amount), 201)  # type: ignore[no-any-return]


def _status(api: Api, *ids: int) -> list[str]:
    return [api.ok(api.get(f"/v1/applications/{i}"))["status"] for i in ids]


# ------------------------------------------------------------------ applying and reading
def test_enterprise_applies_and_reads_its_own(api: Api, provider: dict[str, Any], applicant: Applicant) -> None:
    programme = api.programme([provider["id"]], cap_per_enterprise=50_000_00)
    app = _pending(api, applicant, programme["id"], 50_000_00)  # exactly the cap
    assert {k: app[k] for k in ("enterprise_id", "programme_id", "amount", "purpose", "status", "approved_amount",
                                "reason", "tx_hash", "block_number", "decided_at")} == {
        "enterprise_id": applicant.enterprise["id"], "programme_id": programme["id"], "amount": 50_000_00,
        "purpose": "model training", "status": "pending", "approved_amount": None, "reason": None, "tx_hash": None,
        "block_number": None, "decided_at": None}  # fmt: skip
    assert api.ok(applicant.as_.get(f"/v1/applications/{app['id']}")) == app
    other = _applicant(api)
    theirs = _pending(api, other, programme["id"], 1_00)
    assert [a["id"] for a in api.ok(applicant.as_.get("/v1/applications"))] == [app["id"]]  # only its own
    _refused(applicant.as_.get(f"/v1/applications/{theirs['id']}"), 404, "not_found")
    as_provider = api.as_(api.key_for("provider", provider["id"]))
    assert api.ok(as_provider.get("/v1/applications")) == []
    _refused(as_provider.get(f"/v1/applications/{app['id']}"), 404, "not_found")
    staff = api.ok(api.get("/v1/applications", programme_id=programme["id"], status="pending"))
    assert [a["id"] for a in staff] == [app["id"], theirs["id"]]
    _refused(api.get("/v1/applications/999999"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 10_000_01}, "amount"),  # over the cap
        ({"amount": 0}, "body.amount"),
        ({"purpose": "   "}, "body.purpose"),
        ({"enterprise_id": "other"}, None),  # an enterprise applies for itself only
    ],
)
def test_application_refusals(api: Api, provider: dict[str, Any], applicant: Applicant, body: dict[str, Any],
                              field: str | None) -> None:  # fmt: skip
    programme = api.programme([provider["id"]], cap_per_enterprise=10_000_00)
    full = {"programme_id": programme["id"], "amount": 1_00, "purpose": "x", **body}
    if full.get("enterprise_id") == "other":
        full["enterprise_id"] = api.enterprise()["id"]
    error = _refused(applicant.as_.post("/v1/applications", full), 422, "invalid_input")
    assert field is None or field in [p["field"] for p in error["details"].get("problems", [])] + [
        error["details"].get("field")]  # fmt: skip
    assert api.ok(api.get("/v1/applications", programme_id=programme["id"])) == []


def test_only_enterprises_apply_and_only_issuers_decide(api: Api, provider: dict[str, Any],
                                                        applicant: Applicant) -> None:  # fmt: skip
    programme = api.programme([provider["id"]])
    _refused(api.issuer().post("/v1/applications", {"programme_id": programme["id"], "amount": 1, "purpose": "x"}),
             403, "forbidden")  # fmt: skip
    _refused(applicant.apply(999_999, 1_00), 404, "not_found")
    app = _pending(api, applicant, programme["id"], 1_00)
    for who in (api, applicant.as_, api.as_(api.key_for("supervisor"))):
        _refused(who.post(f"/v1/applications/{app['id']}/approve", {}), 403, "forbidden")
        _refused(who.post(f"/v1/applications/{app['id']}/reject", {"reason": "no"}), 403, "forbidden")
        _refused(who.post("/v1/applications/approve-batch", {"application_ids": [app["id"]]}), 403, "forbidden")
    assert _status(api, app["id"]) == ["pending"]


# ------------------------------------------------------------------ deciding
@pytest.mark.parametrize(("asked", "approved"), [(None, 80_000_00), (30_000_00, 30_000_00)], ids=["full", "less"])
def test_approval_issues_on_chain(api: Api, provider: dict[str, Any], applicant: Applicant, issuer: Api,
                                  asked: int | None, approved: int) -> None:  # fmt: skip
    programme = api.programme([provider["id"]])
    app = _pending(api, applicant, programme["id"], 80_000_00)
    before = api.service.tx_count("issue")
    done = api.ok(issuer.post(f"/v1/applications/{app['id']}/approve", {} if asked is None else {"amount": asked}))
    assert (done["status"], done["approved_amount"], done["amount"]) == ("issued", approved, 80_000_00)
    assert done["tx_hash"].startswith("0x") and done["block_number"] > 0 and done["decided_at"]
    receipt = api.service.ctx.chain.rpc.receipt(done["tx_hash"])
    assert receipt is not None and int(receipt["blockNumber"], 16) == done["block_number"]
    assert api.service.ctx.chain.balance(applicant.enterprise["address"], programme["id"]) == approved
    assert api.service.tx_count("issue") == before + 1
    assert api.ok(api.get(f"/v1/programmes/{programme['id']}"))["issued"] == approved


def test_reject_needs_a_reason_and_decisions_are_final(api: Api, provider: dict[str, Any], applicant: Applicant,
                                                       issuer: Api) -> None:  # fmt: skip
    programme = api.programme([provider["id"]])
    app = _pending(api, applicant, programme["id"], 5_000_00)
    for empty in ({"reason": ""}, {"reason": "   "}, {}):
        _refused(issuer.post(f"/v1/applications/{app['id']}/reject", empty), 422, "invalid_input")
    _refused(issuer.post(f"/v1/applications/{app['id']}/approve", {"amount": 5_000_01}), 422, "invalid_input")
    rejected = api.ok(issuer.post(f"/v1/applications/{app['id']}/reject", {"reason": "purpose is not compute"}))
    assert (rejected["status"], rejected["reason"], rejected["approved_amount"], rejected["tx_hash"]) == (
        "rejected", "purpose is not compute", None, None)  # fmt: skip
    assert api.ok(applicant.as_.get(f"/v1/applications/{app['id']}"))["reason"] == "purpose is not compute"
    _refused(issuer.post(f"/v1/applications/{app['id']}/approve", {}), 409, "invalid_state")
    _refused(issuer.post(f"/v1/applications/{app['id']}/reject", {"reason": "again"}), 409, "invalid_state")
    issued = _pending(api, applicant, programme["id"], 1_00)
    api.ok(issuer.post(f"/v1/applications/{issued['id']}/approve", {}))
    before = api.service.tx_count()
    _refused(issuer.post(f"/v1/applications/{issued['id']}/approve", {}), 409, "invalid_state")
    _refused(issuer.post(f"/v1/applications/{issued['id']}/reject", {"reason": "late"}), 409, "invalid_state")
    assert api.service.tx_count() == before
    assert api.service.ctx.chain.balance(applicant.enterprise["address"], programme["id"]) == 1_00


@pytest.mark.parametrize("code", ["budget_exceeded", "cap_exceeded"])
def test_budget_and_cap_are_checked_before_any_transaction(api: Api, provider: dict[str, Any], issuer: Api,
                                                           code: str) -> None:  # fmt: skip
    programme = api.programme([provider["id"]], budget=150_00, cap_per_enterprise=100_00)
    first = _applicant(api)
    api.ok(issuer.post(f"/v1/applications/{_pending(api, first, programme['id'], 100_00)['id']}/approve", {}))
    who = _applicant(api) if code == "budget_exceeded" else first  # 50 left in the budget; 0 left in first's cap
    app = _pending(api, who, programme["id"], 60_00 if code == "budget_exceeded" else 1)
    before, issued = api.service.tx_count(), api.service.ctx.chain.programme(programme["id"]).issued
    error = _refused(issuer.post(f"/v1/applications/{app['id']}/approve", {}), 409, code)
    assert error["details"]["available"] == (50_00 if code == "budget_exceeded" else 0)
    assert api.service.tx_count() == before and api.service.ctx.chain.programme(programme["id"]).issued == issued
    assert _status(api, app["id"]) == ["pending"]


# ------------------------------------------------------------------ batches
def test_batch_issues_in_one_transaction(api: Api, provider: dict[str, Any], issuer: Api) -> None:
    programme = api.programme([provider["id"]])
    who = [_applicant(api) for _ in range(3)]
    apps = [_pending(api, w, programme["id"], (i + 1) * 1_000_00) for i, w in enumerate(who)]
    before = api.service.tx_count("issue")
    done = api.ok(issuer.post("/v1/applications/approve-batch", {"application_ids": [a["id"] for a in apps]}))
    assert [d["id"] for d in done] == [a["id"] for a in apps] and {d["status"] for d in done} == {"issued"}
    assert len({(d["tx_hash"], d["block_number"]) for d in done}) == 1
    assert api.service.tx_count("issue") == before + 1
    for i, w in enumerate(who):
        assert api.service.ctx.chain.balance(w.enterprise["address"], programme["id"]) == (i + 1) * 1_000_00


def test_batch_is_all_or_nothing(api: Api, provider: dict[str, Any], issuer: Api) -> None:
    programme = api.programme([provider["id"]], cap_per_enterprise=1_000_00)
    a, b = _applicant(api), _applicant(api)
    ok = _pending(api, a, programme["id"], 1_000_00)
    twice = [_pending(api, b, programme["id"], 600_00) for _ in range(2)]  # each within b's cap, together over it
    ids = [ok["id"], *(t["id"] for t in twice)]
    other = api.programme([provider["id"]])
    before = api.service.tx_count()
    _refused(issuer.post("/v1/applications/approve-batch", {"application_ids": ids}), 409, "cap_exceeded")
    assert _status(api, *ids) == ["pending"] * 3
    decided = _pending(api, b, programme["id"], 1_00)
    api.ok(issuer.post(f"/v1/applications/{decided['id']}/reject", {"reason": "duplicate"}))
    batch = [ok["id"], twice[0]["id"], decided["id"]]  # within every limit, but one was decided already
    _refused(issuer.post("/v1/applications/approve-batch", {"application_ids": batch}), 409, "invalid_state")
    assert _status(api, *batch) == ["pending", "pending", "rejected"]
    elsewhere = _pending(api, a, other["id"], 1_00)
    _refused(issuer.post("/v1/applications/approve-batch", {"application_ids": [ok["id"], elsewhere["id"]]}),
             422, "invalid_input")  # fmt: skip
    _refused(issuer.post("/v1/applications/approve-batch", {"application_ids": []}), 422, "invalid_input")
    _refused(issuer.post("/v1/applications/approve-batch", {"application_ids": [ok["id"], 999_999]}),
             404, "not_found")  # fmt: skip
    assert api.service.tx_count() == before and api.service.ctx.chain.programme(programme["id"]).issued == 0
    assert _status(api, ok["id"], elsewhere["id"]) == ["pending", "pending"]


def test_batch_with_a_decided_application_is_invalid_state(api: Api, provider: dict[str, Any], issuer: Api) -> None:
    programme = api.programme([provider["id"]], cap_per_enterprise=1_000_00)
    who = _applicant(api)
    issued = _pending(api, who, programme["id"], 1_000_00)
    api.ok(issuer.post(f"/v1/applications/{issued['id']}/approve", {}))
    pending = _pending(api, _applicant(api), programme["id"], 1_00)
    ids = [pending["id"], issued["id"]]
    _refused(issuer.post("/v1/applications/approve-batch", {"application_ids": ids}), 409, "invalid_state")


# ------------------------------------------------------------------ freezing, expiry, pausing
def test_frozen_enterprise_cannot_apply_nor_be_issued(api: Api, provider: dict[str, Any], applicant: Applicant,
                                                      issuer: Api) -> None:  # fmt: skip
    programme = api.programme([provider["id"]])
    app = _pending(api, applicant, programme["id"], 1_00)
    supervisor = api.as_(api.key_for("supervisor"))
    api.ok(supervisor.post(f"/v1/participants/{applicant.enterprise['id']}/freeze", {"reason_code": 9}))
    # The enterprise's own key stops working (403 account_frozen), so the service's 409 account_frozen in apply()
    # cannot be reached over HTTP.
    _refused(applicant.apply(programme["id"], 1_00), 403, "account_frozen")
    before = api.service.tx_count()
    _refused(issuer.post(f"/v1/applications/{app['id']}/approve", {}), 409, "account_frozen")
    assert api.service.tx_count() == before and _status(api, app["id"]) == ["pending"]


def test_approval_after_expiry_is_refused(api: Api, provider: dict[str, Any], applicant: Applicant,
                                          issuer: Api) -> None:  # fmt: skip
    programme = api.programme([provider["id"]], valid_until=_iso(api.chain_time() + 20))
    app = _pending(api, applicant, programme["id"], 1_00)
    api.service.ctx.chain.rpc.call("evm_increaseTime", [60])
    api.service.ctx.chain.rpc.call("evm_mine", [])
    before = api.service.tx_count()
    _refused(issuer.post(f"/v1/applications/{app['id']}/approve", {}), 409, "programme_expired")
    assert api.service.tx_count() == before and _status(api, app["id"]) == ["pending"]


def test_applying_after_expiry_is_refused(api: Api, provider: dict[str, Any], applicant: Applicant) -> None:
    programme = api.programme([provider["id"]], valid_until=_iso(api.chain_time() + 20))
    api.service.ctx.chain.rpc.call("evm_increaseTime", [60])
    api.service.ctx.chain.rpc.call("evm_mine", [])
    _refused(applicant.apply(programme["id"], 1_00), 409, "programme_expired")


@dataclass
class Paused:
    programme: dict[str, Any]
    funded: Applicant
    app: dict[str, Any]
    claim: dict[str, Any]


@pytest.fixture
def paused(api: Api, provider: dict[str, Any], issuer: Api) -> Iterator[Paused]:
    """A ledger paused by a supervisor, with a pending application and a pending claim; always resumed after."""
    programme = api.programme([provider["id"]])
    funded = _applicant(api)
    api.fund(funded.enterprise, programme["id"], 10_000_00)
    app = _pending(api, funded, programme["id"], 1_00)
    claim = api.ok(_claim(api, provider, funded, programme), 201)
    supervisor = api.as_(api.key_for("supervisor"))
    try:
        done = api.ok(supervisor.post("/v1/pause"))
        assert len(done["tx_hashes"]) == 1 and api.ok(api.get("/v1/health"))["paused"] is True
        yield Paused(programme, funded, app, claim)
    finally:  # the chain is shared with other modules: resume even if the test or the API failed
        ctx = api.service.ctx
        if ctx.chain.paused():
            ctx.chain.send(ctx.operators["admin"], "unpause", kind=TxKind.UNPAUSE)
    assert api.ok(api.get("/v1/health"))["paused"] is False


def _claim(api: Api, provider: dict[str, Any], who: Applicant, programme: dict[str, Any]) -> httpx.Response:
    body = {"enterprise_id": who.enterprise["id"], "programme_id": programme["id"], "invoice_number": invoice_number(),
            "invoice_amount": 1_000_00, "category": "intelligent"}  # fmt: skip
    return api.as_(api.key_for("provider", provider["id"])).post("/v1/redemptions", body)


def test_pause_stops_issuance_and_burns_until_the_admin_resumes(api: Api, provider: dict[str, Any], issuer: Api,
                                                                 paused: Paused) -> None:  # fmt: skip
    supervisor = api.as_(api.key_for("supervisor"))
    _refused(supervisor.post("/v1/pause"), 409, "invalid_state")  # already paused
    _refused(issuer.post("/v1/pause"), 403, "forbidden")
    before = api.service.tx_count()
    _refused(issuer.post(f"/v1/applications/{paused.app['id']}/approve", {}), 409, "ledger_paused")
    _refused(_claim(api, provider, paused.funded, paused.programme), 409, "ledger_paused")
    assert api.service.tx_count() == before  # refused before anything was signed
    assert _status(api, paused.app["id"]) == ["pending"]
    # A claim made before the pause: its burn is refused too (the redemption then fails for good).
    _refused(paused.funded.as_.post(f"/v1/redemptions/{paused.claim['id']}/confirm"), 409, "ledger_paused")
    _refused(supervisor.post("/v1/unpause"), 403, "forbidden")  # only the admin resumes
    assert api.ok(api.post("/v1/unpause"))["tx_hashes"]
    _refused(api.post("/v1/unpause"), 409, "invalid_state")
    done = api.ok(issuer.post(f"/v1/applications/{paused.app['id']}/approve", {}))
    assert (done["status"], done["approved_amount"]) == ("issued", 1_00)
    balance = api.service.ctx.chain.balance(paused.funded.enterprise["address"], paused.programme["id"])
    assert balance == 10_000_00 + 1_00


def test_refused_issuance_leaves_the_application_undecided(api: Api, issuer: Api, paused: Paused) -> None:
    _refused(issuer.post(f"/v1/applications/{paused.app['id']}/approve", {"amount": 50}), 409, "ledger_paused")
    app = api.ok(api.get(f"/v1/applications/{paused.app['id']}"))
    assert (app["status"], app["approved_amount"], app["decided_at"]) == ("pending", None, None)
