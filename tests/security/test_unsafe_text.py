"""Finding: NUL, the RTL override U+202E, ANSI escape sequences, zero-width and other control or format characters
were accepted in names, regions, industries, reasons, labels and programme names, and reached the settlement
exports. Every text field of every request body now refuses them with a 422 that names the field, never the text:
one validator on the request models' base class, so a field added later is covered too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError

import backend.api.app  # noqa: F401  (imports every route, so every request model exists)
from backend.api.schemas import Body
from tests.api.support import Api, claim_body, credit_code, invoice_number
from tests.factory import ServiceFactory
from tests.security.claims_world import Claims, claims_world

MARK = "Visible7Q"  # the rest of the refused text: the answer must not carry it back
BAD = {
    "nul": "\x00",
    "bell": "\x07",
    "ansi-escape": "\x1b[31m",
    "delete": "\x7f",
    "c1-csi": "\x9b",
    "rtl-override": "\u202e",
    "zero-width-space": "\u200b",
    "zero-width-joiner": "\u200d",
    "word-joiner": "\u2060",
    "byte-order-mark": "\ufeff",
    "line-separator": "\u2028",
    "newline-inside": "\n",
}
Call = tuple[Api, str, Callable[[str], dict[str, Any]], str]  # caller, path, body with the text, field at fault


def _request_models() -> list[type[Body]]:
    found, todo = [], [Body]
    while todo:
        model = todo.pop()
        found.append(model)
        todo.extend(model.__subclasses__())
    return [m for m in found if m is not Body]


def _text_fields(model: type[Body]) -> dict[str, str]:
    """Fields a client fills with free text (strings that are not an enum, a constant or a formatted value), each
    with a value of an allowed length that ends in an RTL override."""
    fields = {}
    for name, prop in model.model_json_schema()["properties"].items():
        for o in prop.get("anyOf", [prop]):
            if o.get("type") == "string" and not {"enum", "const", "format"} & set(o):
                length = max(o.get("minLength", 2), 2)
                fields[name] = "a" * (length - 1) + BAD["rtl-override"]
    return fields


@pytest.fixture(scope="module")
def world(services: ServiceFactory) -> Iterator[Claims]:
    for svc in services.serve("unsafe-text"):
        with Api(svc) as api:
            yield claims_world(api)


@pytest.fixture(scope="module")
def calls(world: Claims) -> list[Call]:
    w, api = world, world.api
    application = api.ok(w.as_enterprise.post("/v1/applications", {"programme_id": w.programme["id"],
                                                                    "amount": 1_00, "purpose": "x"}), 201)  # fmt: skip
    claim = api.ok(w.claim(), 201)
    window = {"ratio_bps": 5000, "budget": 1_00, "cap_per_enterprise": 1_00, "valid_from": "2030-01-01T00:00:00Z",
              "valid_until": "2031-01-01T00:00:00Z", "categories": ["intelligent"]}  # fmt: skip
    return [
        (api, "/v1/participants/enterprises", lambda t: {"name": t, "credit_code": credit_code()}, "name"),
        (api, "/v1/participants/enterprises", lambda t: {"name": "x", "credit_code": credit_code(), "industry": t},
         "industry"),
        (api, "/v1/participants/enterprises", lambda t: {"name": "x", "credit_code": credit_code(),
                                                         "region_code": t[:12]}, "region_code"),
        (api, "/v1/participants/providers", lambda t: {"name": t, "credit_code": credit_code(),
                                                       "categories": ["general"]}, "name"),
        (api, "/v1/programmes", lambda t: {**window, "name": t}, "name"),
        (api, "/v1/api-keys", lambda t: {"role": "finance", "label": t}, "label"),
        (w.as_enterprise, "/v1/applications", lambda t: {"programme_id": w.programme["id"], "amount": 1_00,
                                                         "purpose": t}, "purpose"),
        (api.issuer(), f"/v1/applications/{application['id']}/reject", lambda t: {"reason": t}, "reason"),
        (w.as_enterprise, f"/v1/redemptions/{claim['id']}/refuse", lambda t: {"reason": t}, "reason"),
        (api.as_(api.key_for("finance")), "/v1/settlements/1/return", lambda t: {"reason": t}, "reason"),
        (w.as_providers[0], "/v1/redemptions", lambda t: claim_body(w.enterprise["id"], w.programme["id"], 2_000_00,
                                                                    invoice_number=t[:64]), "invoice_number"),
    ]  # fmt: skip


def test_every_text_field_of_every_request_model_refuses_unsafe_characters() -> None:
    models = _request_models()
    assert len(models) >= 15  # participants, keys, programmes, applications, claims, settlements, supervision...
    for model in models:
        for field, text in _text_fields(model).items():
            with pytest.raises(ValidationError) as refused:
                model.model_validate({field: text})
            errors = [(e["loc"], e["type"]) for e in refused.value.errors()]
            assert ((field,), "unsafe_characters") in errors, f"{model.__name__}.{field}: {errors}"


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
def test_unsafe_characters_are_refused_in_free_text_naming_the_field_not_the_text(
    world: Claims, calls: list[Call], bad: str
) -> None:
    before, sent = world.api.service.row_counts(), world.api.service.tx_count()
    for client, path, body, field in calls:
        response = client.post(path, body(f"Ok{bad}{MARK}"))
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (422, "invalid_input"), f"{path} {field}: {response.text}"
        assert [(p["field"], p["type"]) for p in error["details"]["problems"]] == [
            (f"body.{field}", "unsafe_characters")
        ], response.text
        assert MARK not in response.text and (bad.isspace() or bad not in response.text), response.text
    assert world.api.service.row_counts() == before and world.api.service.tx_count() == sent


def test_chinese_text_with_ideographic_spaces_and_punctuation_is_kept(world: Claims) -> None:
    name = "廊坊智造科技有限公司（测试）\u3000第二分公司"
    body = {"name": name, "credit_code": credit_code(), "industry": "智能制造·质检", "region_code": "131000"}
    enterprise = world.api.ok(world.api.post("/v1/participants/enterprises", body), 201)
    assert (enterprise["name"], enterprise["industry"]) == (name, "智能制造·质检")
    claim = world.api.ok(world.claim(invoice_number=invoice_number()), 201)
    reason = "这笔算力不是我们订购的，请核实。\u00a0(not ordered by us)"
    refused = world.api.ok(world.as_enterprise.post(f"/v1/redemptions/{claim['id']}/refuse", {"reason": reason}))
    assert refused["error_message"] == reason
