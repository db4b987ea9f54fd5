"""Schemathesis over every operation of the OpenAPI document, against the real service (uvicorn, anvil, SQLite).

The document is the one the service serves (`test_served_document_is_the_one_fuzzed` proves it); it is read from
`create_app` at import, since schemathesis needs the operations when pytest collects. Each operation is called with
the key of a role allowed to call it (admin unless `CALLER` says otherwise), so cases get past 401 and 403 and reach
the services and the chain; a seeded world (participants, a programme, vouchers, an application, claims, a settlement)
gives the small ids the generator favours something to find. Generated `Idempotency-Key`s are made unique per call,
so one reused key does not turn every later case into `idempotency_key_reused`.

Checks run on every response (schemathesis names):
- `not_a_server_error`: no 5xx;
- `status_code_conformance`: the status is one the operation documents;
- `content_type_conformance`, `response_headers_conformance`: documented media types and headers;
- `response_schema_conformance`: the body is the documented one; every refusal is `{"error": {code, message,
  details}}` (and `refusal_has_code` below checks that for every status, documented or not);
- `negative_data_rejection`: a request that breaks the schema (types, bounds, enums, extra fields, missing
  fields) is refused with a 4xx;
- `missing_required_header`, `ignored_auth`: a request without its required header, or without a valid API key,
  is refused (ignored_auth resends each case with no key and a wrong key);
- `unsupported_method`, `allow_header_conformance`: a method the path does not have gets 405 with a truthful `Allow`.

Not run: `positive_data_acceptance` (a schema-valid request must succeed): the service rightly refuses many of them
for rules a JSON schema cannot state (credit-code check digits, a window that ends before it starts, a claim over
the subsidy ratio) with 404/409/422; `use_after_free` and `ensure_resource_availability`: they need the stateful
phase and links between operations, which the document does not declare; `max_response_time`: timing on a shared
2-core CI machine is not a property of the code.

Phases: examples, coverage (deterministic edge and negative cases: bounds, wrong types, missing fields) and
fuzzing. Bounded and reproducible: at most `MAX_EXAMPLES` generated cases per operation, hypothesis derandomized
with no example database, so CI runs the same cases every time (about 45 s on two cores).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, MutableMapping
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks as core_checks
from schemathesis.specs.openapi import checks as openapi_checks

from backend.api.app import create_app
from tests.api.support import Api, Service, invoice_number
from tests.factory import ServiceFactory

MAX_EXAMPLES = 30
SPEC = create_app(lambda: None).openapi()  # type: ignore[arg-type, return-value]
# Unknown query parameters are ignored, as by most HTTP APIs, so the generator is told not to add them.
schema = schemathesis.openapi.from_dict(
    SPEC, config=schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}})
)

# Who calls each operation (by its templated path); everything else is called as admin.
CALLER = {
    "POST /v1/applications": "enterprise",
    "POST /v1/applications/{application_id}/approve": "issuer",
    "POST /v1/applications/{application_id}/reject": "issuer",
    "POST /v1/applications/approve-batch": "issuer",
    "POST /v1/programmes/{programme_id}/reclaim": "issuer",
    "POST /v1/redemptions": "provider",
    "POST /v1/redemptions/{redemption_id}/confirm": "enterprise",
    "POST /v1/redemptions/{redemption_id}/refuse": "enterprise",
    "POST /v1/participants/{participant_id}/freeze": "supervisor",
    "POST /v1/participants/{participant_id}/unfreeze": "supervisor",
    "POST /v1/revocations": "supervisor",
    "POST /v1/settlements": "provider",
    "POST /v1/settlements/{settlement_id}/approve": "finance",
    "POST /v1/settlements/{settlement_id}/return": "finance",
}


@schemathesis.check
def refusal_has_code(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    """Every 4xx and 5xx, documented or not (404, 405, 413, 429 included), is `{"error": {code, message, details}}`."""
    if response.status_code < 400:
        return
    body = json.loads(response.content)
    error = body["error"]
    assert set(body) == {"error"} and set(error) == {"code", "message", "details"}, body
    assert isinstance(error["code"], str) and error["code"].isidentifier() and error["code"].islower(), body
    assert isinstance(error["message"], str) and error["message"] and isinstance(error["details"], dict), body


CHECKS = [
    core_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.missing_required_header,
    openapi_checks.ignored_auth,
    openapi_checks.unsupported_method,
    openapi_checks.allow_header_conformance,
    refusal_has_code,
]


@pytest.fixture(scope="module")
def fuzzed(services: ServiceFactory) -> Iterator[Service]:
    yield from services.serve("fuzzed")


@pytest.fixture(scope="module")
def keys(fuzzed: Service) -> dict[str, str]:
    """Seeds the small ids with real records, and returns a key per role (participants: the seeded ones)."""
    with Api(fuzzed) as api:
        enterprise, provider = api.enterprise(), api.provider()
        programme = api.programme([provider["id"]])["id"]
        api.fund(enterprise, programme, 500_000_00)
        keys = {role: api.key_for(role) for role in ("admin", "issuer", "finance", "supervisor")}
        keys["enterprise"] = api.key_for("enterprise", enterprise["id"])
        keys["provider"] = api.key_for("provider", provider["id"])
        as_enterprise, as_provider = api.as_(keys["enterprise"]), api.as_(keys["provider"])
        apply = {"programme_id": programme, "amount": 1_000_00, "purpose": "x"}
        api.ok(as_enterprise.post("/v1/applications", apply), 201)  # stays pending
        claim = {"enterprise_id": enterprise["id"], "programme_id": programme, "category": "intelligent"}
        claims = [
            api.ok(as_provider.post("/v1/redemptions", {**claim, "invoice_number": invoice_number(),
                                                        "invoice_amount": 2_000_00}), 201)
            for _ in range(4)
        ]  # fmt: skip
        api.ok(as_enterprise.post(f"/v1/redemptions/{claims[-1]['id']}/confirm"))  # three stay pending
        period = {"provider_id": provider["id"], "period_from": "2000-01-01T00:00:00Z"}
        api.ok(as_provider.post("/v1/settlements", {**period, "period_until": "2200-01-01T00:00:00Z"}), 201)
    return keys


def test_served_document_is_the_one_fuzzed(fuzzed: Service) -> None:
    assert httpx.get(f"{fuzzed.url}/openapi.json").json() == json.loads(json.dumps(SPEC))


def _unique_idempotency_key(headers: MutableMapping[str, Any] | None) -> None:
    for name in list(headers or {}):
        value = headers[name] if headers else None
        if name.lower() == "idempotency-key" and isinstance(value, str) and value.strip() and len(value) <= 160:
            headers[name] = f"{value}-{uuid.uuid4().hex}"  # type: ignore[index]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_its_contract(
    case: schemathesis.Case[Any], fuzzed: Service, keys: dict[str, str]
) -> None:
    role = CALLER.get(f"{case.method.upper()} {case.path}", "admin")
    _unique_idempotency_key(case.headers)
    case.call_and_validate(base_url=fuzzed.url, headers={"Authorization": f"Bearer {keys[role]}"}, checks=CHECKS)
