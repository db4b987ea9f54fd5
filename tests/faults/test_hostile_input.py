"""Hostile input: oversized bodies, absurd numbers, unknown ids, deep nesting, secrets in the wrong place, malformed
JSON before authentication, and a frozen participant's key. Each is refused with a 4xx and a machine-readable code,
and nothing is written: no row in any table, no transaction sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from backend.settings import Settings
from tests.api.support import Api, claim_body, credit_code
from tests.factory import ServiceFactory

MAX_BODY = Settings.model_fields["max_body_bytes"].default  # what the served app is built with
PROGRAMME = {"name": "p", "ratio_bps": 5000, "budget": 1_000_00, "cap_per_enterprise": 1_000_00,
             "valid_from": "2020-01-01T00:00:00Z", "valid_until": "2100-01-01T00:00:00Z",
             "categories": ["intelligent"]}  # fmt: skip
ABSURD = [-1, 0, 2**256, 10**15 + 1, 1.5, 100.0, "100", "1e3", True, [1], {"fen": 1}]


@dataclass
class World:
    api: Api
    enterprise: dict[str, Any]
    provider: dict[str, Any]
    programme: int
    application: int  # pending, 800 yuan
    claim: int  # pending
    as_enterprise: Api
    as_provider: Api
    issuer: Api
    supervisor: Api


@pytest.fixture(scope="module")
def world(services: ServiceFactory) -> Iterator[World]:
    for service in services.serve("hostile"):
        with Api(service) as api:
            enterprise, provider = api.enterprise(), api.provider()
            # a small programme: 1,000 yuan budget and cap, 50%
            programme = api.programme([provider["id"]], budget=1_000_00, cap_per_enterprise=1_000_00)["id"]
            as_enterprise = api.as_(api.key_for("enterprise", enterprise["id"]))
            as_provider = api.as_(api.key_for("provider", provider["id"]))
            apply = {"programme_id": programme, "amount": 800_00, "purpose": "training"}
            funded = api.ok(as_enterprise.post("/v1/applications", apply), 201)
            issuer = api.issuer()
            api.ok(issuer.post(f"/v1/applications/{funded['id']}/approve", {}))
            application = api.ok(as_enterprise.post("/v1/applications", apply), 201)["id"]
            claim = api.ok(as_provider.post("/v1/redemptions", _claim(enterprise, programme)), 201)["id"]
            yield World(api, enterprise, provider, programme, application, claim, as_enterprise, as_provider, issuer,
                        api.as_(api.key_for("supervisor")))  # fmt: skip


def _claim(enterprise: dict[str, Any], programme: int, invoice_amount: int = 200_00, **fields: Any) -> dict[str, Any]:
    return claim_body(enterprise["id"], programme, invoice_amount, **fields)  # a small invoice: a small programme


@contextmanager
def nothing_written(world: World) -> Iterator[None]:
    before, sent = world.api.service.row_counts(), world.api.service.tx_count()
    yield
    assert world.api.service.tx_count() == sent, "a transaction was sent"
    assert world.api.service.row_counts() == before, "a row was written"


def invalid(response: httpx.Response, field: str) -> None:
    """422 `invalid_input`, and it names the field at fault (a schema problem, or the service's own check)."""
    details = refused(response, 422, "invalid_input")["error"]["details"]
    named = [p["field"].split(".") for p in details.get("problems", [])] + [[details.get("field", "")]]
    assert any(field in parts for parts in named), response.text


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    body = response.json()
    assert (response.status_code, body["error"]["code"]) == (status, code), response.text
    assert set(body["error"]) == {"code", "message", "details"} and body["error"]["message"]
    return body  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------ oversized bodies
def test_body_over_the_limit_is_413_and_writes_nothing(world: World) -> None:
    body = {"name": "x" * MAX_BODY, "credit_code": credit_code()}
    with nothing_written(world):
        refused(world.api.post("/v1/participants/enterprises", body), 413, "body_too_large")
        chunked = (json.dumps(body)[i : i + 4096].encode() for i in range(0, MAX_BODY + 100, 4096))  # no length given
        headers = {"Authorization": f"Bearer {world.api.key}", "Content-Type": "application/json"}
        response = world.api.http.post("/v1/participants/enterprises", content=chunked, headers=headers)
        refused(response, 413, "body_too_large")


# ------------------------------------------------------------------------------------------ absurd numbers
@pytest.mark.parametrize("value", ABSURD, ids=repr)
def test_absurd_amounts_are_refused_without_a_transaction(world: World, value: Any) -> None:
    w = world
    calls = [  # (caller, path, body, the field that carries the value)
        (w.as_enterprise, "/v1/applications", {"programme_id": w.programme, "amount": value, "purpose": "x"}, "amount"),
        (w.issuer, f"/v1/applications/{w.application}/approve", {"amount": value}, "amount"),
        (w.as_provider, "/v1/redemptions", _claim(w.enterprise, w.programme, invoice_amount=value, amount=1),
         "invoice_amount"),
        (w.as_provider, "/v1/redemptions", _claim(w.enterprise, w.programme, amount=value), "amount"),
        (w.supervisor, "/v1/revocations",
         {"programme_id": w.programme, "enterprise_id": w.enterprise["id"], "amount": value, "reason_code": 1},
         "amount"),
    ]  # fmt: skip
    with nothing_written(w):
        for client, path, body, field in calls:
            invalid(client.post(path, body), field)
        for field in ("budget", "cap_per_enterprise", "ratio_bps"):
            invalid(w.api.post("/v1/programmes", {**PROGRAMME, field: value}), field)


def test_amounts_beyond_the_programme_are_refused_without_a_transaction(world: World) -> None:
    w = world
    with nothing_written(w):
        over_cap = {"programme_id": w.programme, "amount": 1_000_01, "purpose": "x"}  # schema-valid, over budget
        refused(w.as_enterprise.post("/v1/applications", over_cap), 422, "invalid_input")
        # 800 of the 1,000 yuan budget are issued: approving another 800 would exceed it
        refused(w.issuer.post(f"/v1/applications/{w.application}/approve", {}), 409, "budget_exceeded")
        refused(w.issuer.post(f"/v1/applications/{w.application}/approve", {"amount": 800_01}), 422, "invalid_input")
        greedy = _claim(w.enterprise, w.programme, invoice_amount=200_00, amount=100_01)  # over 50% of the invoice
        refused(w.as_provider.post("/v1/redemptions", greedy), 409, "exceeds_subsidy_ratio")
        more_than_held = _claim(w.enterprise, w.programme, invoice_amount=10**15)
        more_than_held["amount"] = 800_01
        refused(w.as_provider.post("/v1/redemptions", more_than_held), 409, "insufficient_balance")
        revoke = {"programme_id": w.programme, "enterprise_id": w.enterprise["id"], "amount": 800_01, "reason_code": 1}
        refused(w.supervisor.post("/v1/revocations", revoke), 422, "invalid_input")
        now = w.api.chain_time()
        bad_window = {"valid_from": "1969-12-31T23:59:59Z", "valid_until": "2100-01-01T00:00:00Z"}
        wide = {"budget": 10**15, "cap_per_enterprise": 10**15 + 1}
        for fields in (bad_window, wide, {"valid_until": "2000-01-01T00:00:00Z"}, {"valid_from": now}):
            refused(w.api.post("/v1/programmes", {**PROGRAMME, **fields}), 422, "invalid_input")
        refused(w.api.post("/v1/programmes", {**PROGRAMME, "provider_ids": [w.enterprise["id"]]}), 422, "invalid_input")


@pytest.mark.parametrize("big", [999_999, 2**53 - 1])
def test_ids_that_do_not_exist_are_404_and_absurd_ids_422(world: World, big: int) -> None:
    w = world
    with nothing_written(w):
        apply = {"programme_id": big, "amount": 1_00, "purpose": "x"}
        refused(w.as_enterprise.post("/v1/applications", apply), 404, "not_found")
        refused(w.issuer.post(f"/v1/applications/{big}/approve", {}), 404, "not_found")
        refused(w.as_provider.post("/v1/redemptions", _claim({"id": big}, w.programme)), 404, "not_found")
        refused(w.as_enterprise.post(f"/v1/redemptions/{big}/confirm"), 404, "not_found")
        revoke = {"programme_id": big, "enterprise_id": w.enterprise["id"], "amount": 1, "reason_code": 1}
        refused(w.supervisor.post("/v1/revocations", revoke), 404, "not_found")
        refused(w.supervisor.post(f"/v1/participants/{big}/freeze", {}), 404, "not_found")
        refused(w.api.get(f"/v1/audit/providers/{w.enterprise['id']}/statement"), 404, "not_found")  # not a provider
        too_big = 2**53  # beyond the largest id: refused before any database column is asked to hold it
        refused(w.as_enterprise.post(f"/v1/redemptions/{too_big}/confirm"), 422, "invalid_input")
        refused(w.api.get(f"/v1/programmes/{too_big}"), 422, "invalid_input")
        refused(w.api.get("/v1/redemptions", offset=too_big), 422, "invalid_input")
        refused(w.api.get("/v1/programmes/-1"), 404, "not_found")  # not an id at all


def test_deeply_nested_json_is_a_clear_4xx(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.as_enterprise.key}", "Content-Type": "application/json"}
    with nothing_written(world):
        # As deep as the size limit allows. Whether the parser takes it depends on the process's recursion limit
        # (py_ecc, imported with web3, raises it to 100,000): parsed, it is refused as the wrong type (422); not
        # parsed, as a body that cannot be read (400). Either way a 4xx with a code, never a 500 or a crash.
        for deep in ("[" * 32_000 + "]" * 32_000, '{"purpose": ' + "[" * 32_000 + "]" * 32_000 + "}"):
            response = world.api.http.post("/v1/applications", content=deep, headers=headers)
            code = refused(response, response.status_code, response.json()["error"]["code"])["error"]["code"]
            assert (response.status_code, code) in ((422, "invalid_input"), (400, "invalid_body")), response.text
        nested: Any = "training"
        for _ in range(200):
            nested = {"purpose": nested}
        body = {"programme_id": world.programme, "amount": 1_00, "purpose": nested}
        refused(world.as_enterprise.post("/v1/applications", body), 422, "invalid_input")


# ------------------------------------------------------------------------------------------ secrets and auth
def test_validation_errors_never_echo_a_secret(world: World) -> None:
    secret_key = world.api.key_for("issuer")
    private_key = "0x" + "ab12" * 16
    sent = [
        world.api.post("/v1/participants/enterprises", {"name": "x", "credit_code": secret_key}),  # wrong length
        world.api.post(
            "/v1/participants/enterprises", {"name": "x", "credit_code": credit_code(), "private_key": private_key}
        ),
        world.as_enterprise.post(
            "/v1/applications", {"programme_id": world.programme, "amount": private_key, "purpose": secret_key * 100}
        ),
        world.api.post("/v1/api-keys", {"role": secret_key, "label": private_key * 10}),
    ]
    for response in sent:
        refused(response, 422, "invalid_input")
        assert secret_key not in response.text and private_key not in response.text
        assert "ab12ab12" not in response.text


@pytest.mark.parametrize("body", ['{"programme_id": 1,', "[" * 30_000, "\x00\xff"], ids=["truncated", "deep", "binary"])
def test_malformed_bodies_are_judged_only_after_the_api_key(world: World, body: str) -> None:
    """Before authenticating, a caller learns nothing but 401: not even whether its JSON parsed."""
    post = world.api.http.post
    json_type = {"Content-Type": "application/json"}
    for auth in ({}, {"Authorization": "Bearer cvl_000000000000_guessed"}, {"Authorization": "Basic eDp5"}):
        refused(post("/v1/applications", content=body, headers=json_type | auth), 401, "unauthenticated")
    response = post("/v1/applications", content=body, headers=json_type | {"Authorization": f"Bearer {world.api.key}"})
    assert response.status_code in (400, 422) and response.json()["error"]["code"] in ("invalid_body", "invalid_input")


# ------------------------------------------------------------------------------------------ a frozen participant
def test_frozen_participants_key_stops_at_once_for_ledger_changes(world: World) -> None:
    w = world
    path_e, path_p = f"/v1/participants/{w.enterprise['id']}", f"/v1/participants/{w.provider['id']}"
    apply = {"programme_id": w.programme, "amount": 1_00, "purpose": "while frozen"}
    w.api.ok(w.supervisor.post(f"{path_e}/freeze", {"reason_code": 7}))
    w.api.ok(w.supervisor.post(f"{path_p}/freeze", {"reason_code": 7}))
    try:
        with nothing_written(w):
            refused(w.as_enterprise.post("/v1/applications", apply), 403, "account_frozen")
            refused(w.as_enterprise.post(f"/v1/redemptions/{w.claim}/confirm"), 403, "account_frozen")
            refused(w.as_enterprise.post(f"/v1/redemptions/{w.claim}/refuse", {"reason": "x"}), 403, "account_frozen")
            refused(w.as_provider.post("/v1/redemptions", _claim(w.enterprise, w.programme)), 403, "account_frozen")
            refused(w.as_enterprise.post("/v1/applications", apply, key="frozen-1"), 403, "account_frozen")
    finally:
        w.api.ok(w.supervisor.post(f"{path_e}/unfreeze"))
        w.api.ok(w.supervisor.post(f"{path_p}/unfreeze"))
    assert w.api.ok(w.api.get(f"/v1/redemptions/{w.claim}"))["status"] == "pending"
    w.api.ok(w.as_enterprise.post("/v1/applications", apply), 201)  # unfrozen: the same key works again
