"""Programmes over HTTP: creation checked before any transaction, live figures read from the chain, balances,
reclaim after expiry (chain time) and revocation by supervisors."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.api.support import Api, _iso, invoice_number

pytestmark = pytest.mark.both_databases


def _refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    return response.json()["error"]  # type: ignore[no-any-return]


def _figures(api: Api, programme_id: int) -> dict[str, int]:
    p = api.ok(api.get(f"/v1/programmes/{programme_id}"))
    return {k: p[k] for k in ("issued", "redeemed", "reclaimed", "revoked", "outstanding", "remaining")}


def _advance(api: Api, seconds: int) -> None:
    api.service.ctx.chain.rpc.call("evm_increaseTime", [seconds])
    api.service.ctx.chain.rpc.call("evm_mine", [])


def _ts(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp())


@pytest.fixture(scope="module")
def providers(api: Api) -> list[dict[str, Any]]:
    return [api.provider(categories=["intelligent", "supercomputing"]), api.provider(categories=["general"])]


@pytest.fixture(scope="module")
def supervisor(api: Api) -> Api:
    return api.as_(api.key_for("supervisor"))


# ------------------------------------------------------------------ creation and live figures
def test_create_reads_back_every_field(api: Api, providers: list[dict[str, Any]]) -> None:
    now = api.chain_time()
    ids = [p["id"] for p in providers]
    body = {"name": "Hebei AI compute 2025", "ratio_bps": 3000, "budget": 5_000_000_00,
            "cap_per_enterprise": 200_000_00, "valid_from": _iso(now - 3600), "valid_until": _iso(now + 90 * 86400),
            "categories": ["supercomputing", "intelligent"], "provider_ids": [ids[1], ids[0], ids[1]]}  # fmt: skip
    before = api.service.tx_count("create_programme")
    created = api.ok(api.post("/v1/programmes", body), 201)
    assert api.service.tx_count("create_programme") == before + 1
    assert {k: created[k] for k in ("name", "ratio_bps", "budget", "cap_per_enterprise")} == {
        k: body[k] for k in ("name", "ratio_bps", "budget", "cap_per_enterprise")}  # fmt: skip
    assert (_ts(created["valid_from"]), _ts(created["valid_until"])) == (now - 3600, now + 90 * 86400)
    assert created["categories"] == ["intelligent", "supercomputing"] and created["provider_ids"] == sorted(ids)
    assert created["tx_hash"].startswith("0x")
    assert _figures(api, created["id"]) == {"issued": 0, "redeemed": 0, "reclaimed": 0, "revoked": 0,
                                            "outstanding": 0, "remaining": 5_000_000_00}  # fmt: skip
    state = api.service.ctx.chain.programme(created["id"])
    assert (state.budget, state.cap_per_enterprise, state.ratio_bps, state.categories) == (5_000_000_00, 200_000_00,
                                                                                           3000, 0b101)  # fmt: skip
    for p in providers:
        assert api.service.ctx.chain.call("isProgrammeProvider", created["id"], p["address"]) is True
    assert api.ok(api.get(f"/v1/programmes/{created['id']}")) == created
    listed = api.ok(api.as_(api.key_for("provider", ids[0])).get("/v1/programmes"))  # any role may read
    assert created["id"] in {p["id"] for p in listed}


def test_figures_follow_funding_and_redemption(api: Api, providers: list[dict[str, Any]]) -> None:
    programme = api.programme([providers[0]["id"]], budget=1_000_000_00, cap_per_enterprise=500_000_00)
    enterprise = api.enterprise()
    api.fund(enterprise, programme["id"], 300_000_00)
    assert _figures(api, programme["id"]) == {"issued": 300_000_00, "redeemed": 0, "reclaimed": 0, "revoked": 0,
                                              "outstanding": 300_000_00, "remaining": 700_000_00}  # fmt: skip
    as_provider = api.as_(api.key_for("provider", providers[0]["id"]))
    claim = api.ok(as_provider.post("/v1/redemptions", {
        "enterprise_id": enterprise["id"], "programme_id": programme["id"], "invoice_number": invoice_number(),
        "invoice_amount": 100_000_00, "category": "intelligent"}), 201)  # fmt: skip
    api.ok(api.as_(api.key_for("enterprise", enterprise["id"])).post(f"/v1/redemptions/{claim['id']}/confirm"))
    assert _figures(api, programme["id"]) == {"issued": 300_000_00, "redeemed": 50_000_00, "reclaimed": 0,
                                              "revoked": 0, "outstanding": 250_000_00,
                                              "remaining": 700_000_00}  # fmt: skip


def test_balances_are_per_programme_and_private(api: Api, providers: list[dict[str, Any]]) -> None:
    programme = api.programme([providers[0]["id"]])
    enterprise, other = api.enterprise(), api.enterprise()
    api.fund(enterprise, programme["id"], 12_345)
    as_enterprise = api.as_(api.key_for("enterprise", enterprise["id"]))
    mine = {b["programme_id"]: b["balance"] for b in api.ok(as_enterprise.get(f"/v1/enterprises/{enterprise['id']}"
                                                                                "/balances"))}  # fmt: skip
    assert mine[programme["id"]] == 12_345 and set(mine.values()) <= {0, 12_345}
    assert api.ok(api.get(f"/v1/enterprises/{enterprise['id']}/balances")) == api.ok(
        as_enterprise.get(f"/v1/enterprises/{enterprise['id']}/balances"))  # fmt: skip
    _refused(as_enterprise.get(f"/v1/enterprises/{other['id']}/balances"), 404, "not_found")
    _refused(api.get(f"/v1/enterprises/{providers[0]['id']}/balances"), 404, "not_found")


def test_balances_of_every_programme_come_from_one_chain_request(
    api: Api, providers: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = (api.programme([providers[0]["id"]]) for _ in range(3))
    enterprise = api.enterprise()
    api.fund(enterprise, first["id"], 1_000_00)
    api.fund(enterprise, third["id"], 3_000_00)
    rpc, chain = api.service.ctx.chain.rpc, api.service.ctx.chain
    selectors = (chain.encode("balanceOf", enterprise["address"], 0)[:10], chain.encode("balanceOfBatch", [], [])[:10])
    trips: list[str] = []
    post = rpc._post

    def recorded(payload: Any) -> Any:
        if any(sel in json.dumps(payload) for sel in selectors):  # the block follower polls meanwhile: not counted
            trips.append(json.dumps(payload))
        return post(payload)

    monkeypatch.setattr(rpc, "_post", recorded)
    mine = {b["programme_id"]: b["balance"] for b in api.ok(api.get(f"/v1/enterprises/{enterprise['id']}/balances"))}
    assert len(trips) == 1 and len(mine) >= 3, trips
    assert (mine[first["id"]], mine[second["id"]], mine[third["id"]]) == (1_000_00, 0, 3_000_00)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ratio_bps": 0}, "body.ratio_bps"),
        ({"ratio_bps": 10_001}, "body.ratio_bps"),
        ({"budget": 100_00, "cap_per_enterprise": 100_01}, "budget"),
        ({"budget": 0}, "body.budget"),
        ({"valid_from": -7200, "valid_until": -60}, "valid_until"),  # the window is already over
        ({"valid_from": 7200, "valid_until": 3600}, "valid_until"),  # reversed
        ({"valid_from": 3600, "valid_until": 3600}, "valid_until"),  # empty
        ({"categories": []}, "body.categories"),
        ({"categories": ["quantum"]}, "body.categories.0"),
        ({"provider_ids": [999_999]}, "provider_ids"),
        ({"provider_ids": ["enterprise"]}, "provider_ids"),
        ({"name": ""}, "body.name"),
    ],
)
def test_invalid_programme_is_refused_before_any_transaction(
    api: Api, providers: list[dict[str, Any]], change: dict[str, Any], field: str
) -> None:
    now = api.chain_time()
    body: dict[str, Any] = {"name": "Bad", "ratio_bps": 5000, "budget": 1_000_00, "cap_per_enterprise": 1_000_00,
                            "valid_from": _iso(now - 60), "valid_until": _iso(now + 86400),
                            "categories": ["general"], "provider_ids": [providers[1]["id"]]}  # fmt: skip
    for k, v in change.items():  # times are offsets from the chain's clock; "enterprise" is a real enterprise id
        body[k] = _iso(now + v) if k.startswith("valid_") else v
    if change.get("provider_ids") == ["enterprise"]:
        body["provider_ids"] = [providers[0]["id"], api.enterprise()["id"]]
    before, count = api.service.tx_count(), len(api.ok(api.get("/v1/programmes")))
    error = _refused(api.post("/v1/programmes", body), 422, "invalid_input")
    assert field in [p["field"] for p in error["details"].get("problems", [])] + [error["details"].get("field")]
    assert api.service.tx_count() == before and len(api.ok(api.get("/v1/programmes"))) == count


def test_unknown_programme_and_wrong_role(api: Api, providers: list[dict[str, Any]], supervisor: Api) -> None:
    _refused(api.get("/v1/programmes/999999"), 404, "not_found")
    _refused(api.issuer().post("/v1/programmes/999999/reclaim"), 404, "not_found")
    now = api.chain_time()
    body = {"name": "X", "ratio_bps": 5000, "budget": 100, "cap_per_enterprise": 100, "valid_from": _iso(now),
            "valid_until": _iso(now + 3600), "categories": ["general"]}  # fmt: skip
    _refused(supervisor.post("/v1/programmes", body), 403, "forbidden")


# ------------------------------------------------------------------ reclaim after expiry
def test_reclaim_is_refused_while_the_programme_is_open(api: Api, providers: list[dict[str, Any]]) -> None:
    programme = api.programme([providers[0]["id"]])
    api.fund(api.enterprise(), programme["id"], 1_000_00)
    before = api.service.tx_count()
    _refused(api.issuer().post(f"/v1/programmes/{programme['id']}/reclaim"), 409, "programme_still_active")
    _refused(api.post(f"/v1/programmes/{programme['id']}/reclaim"), 403, "forbidden")  # the issuer's job
    assert api.service.tx_count() == before and _figures(api, programme["id"])["reclaimed"] == 0


def test_reclaim_after_expiry_burns_what_is_left(api: Api, providers: list[dict[str, Any]]) -> None:
    now = api.chain_time()
    programme = api.programme([providers[0]["id"]], valid_until=_iso(now + 30))
    rich, spent = api.enterprise(), api.enterprise()
    api.fund(rich, programme["id"], 7_000_00)
    api.fund(spent, programme["id"], 3_000_00)
    revoke = {"programme_id": programme["id"], "enterprise_id": spent["id"], "amount": 3_000_00, "reason_code": 2}
    api.ok(api.as_(api.key_for("supervisor")).post("/v1/revocations", revoke))
    _advance(api, 60)
    issuer = api.issuer()
    done = api.ok(issuer.post(f"/v1/programmes/{programme['id']}/reclaim"))
    assert (done["amount"], done["holders"], len(done["tx_hashes"])) == (7_000_00, 1, 1)  # empty holders skipped
    assert _figures(api, programme["id"]) == {"issued": 10_000_00, "redeemed": 0, "reclaimed": 7_000_00,
                                              "revoked": 3_000_00, "outstanding": 0,
                                              "remaining": programme["budget"]}  # fmt: skip
    assert api.service.ctx.chain.balance(rich["address"], programme["id"]) == 0
    again = api.ok(issuer.post(f"/v1/programmes/{programme['id']}/reclaim"))
    assert again == {"tx_hashes": [], "amount": 0, "holders": 0}


# ------------------------------------------------------------------ revocation by supervisors
def test_revocation_burns_with_a_reason_code(api: Api, providers: list[dict[str, Any]], supervisor: Api) -> None:
    programme = api.programme([providers[0]["id"]])
    enterprise = api.enterprise()
    api.fund(enterprise, programme["id"], 5_000_00)
    body = {"programme_id": programme["id"], "enterprise_id": enterprise["id"], "amount": 2_000_00, "reason_code": 42}
    done = api.ok(supervisor.post("/v1/revocations", body))
    assert (done["amount"], done["holders"], len(done["tx_hashes"])) == (2_000_00, 1, 1)
    chain = api.service.ctx.chain
    assert chain.balance(enterprise["address"], programme["id"]) == 3_000_00
    receipt = chain.rpc.receipt(done["tx_hashes"][0])
    assert receipt is not None
    (event,) = [ev for ev in map(chain.events.decode, receipt["logs"]) if ev and ev.name == "VoucherRevoked"]
    assert (event.args["amount"], event.args["reasonCode"]) == (2_000_00, 42)
    assert event.args["holder"].lower() == enterprise["address"].lower()
    figures = _figures(api, programme["id"])
    assert (figures["revoked"], figures["outstanding"], figures["remaining"]) == (
        2_000_00, 3_000_00, programme["budget"] - 3_000_00)  # revoked vouchers go back to the budget  # fmt: skip


@pytest.mark.parametrize(
    ("change", "who", "status", "code"),
    [
        ({"amount": 5_000_01}, "supervisor", 422, "invalid_input"),  # more than the balance
        ({"reason_code": 0}, "supervisor", 422, "invalid_input"),
        ({"amount": 0}, "supervisor", 422, "invalid_input"),
        ({"enterprise_id": "provider"}, "supervisor", 404, "not_found"),
        ({"programme_id": 999_999}, "supervisor", 404, "not_found"),
        ({}, "admin", 403, "forbidden"),
        ({}, "issuer", 403, "forbidden"),
    ],
)
def test_revocation_refusals(api: Api, providers: list[dict[str, Any]], change: dict[str, Any], who: str,
                             status: int, code: str) -> None:  # fmt: skip
    programme = api.programme([providers[0]["id"]])
    enterprise = api.enterprise()
    api.fund(enterprise, programme["id"], 5_000_00)
    body = {"programme_id": programme["id"], "enterprise_id": enterprise["id"], "amount": 1_00, "reason_code": 3,
            **change}  # fmt: skip
    if body["enterprise_id"] == "provider":
        body["enterprise_id"] = providers[0]["id"]
    caller = api if who == "admin" else api.as_(api.key_for(who))
    before = api.service.tx_count()
    _refused(caller.post("/v1/revocations", body), status, code)
    assert api.service.tx_count() == before
    assert api.service.ctx.chain.balance(enterprise["address"], programme["id"]) == 5_000_00
