"""Participants over HTTP: registration (credit codes checked, managed address registered on chain), listing,
freezing by supervisors, related parties, and API keys (role/participant rules, secrets shown once)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from web3 import Web3

from backend.credit_code import ALPHABET
from tests.api.support import Api, credit_code

pytestmark = pytest.mark.both_databases

ENTERPRISE, PROVIDER = 1, 2  # the contract's Kind


def _refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    return response.json()["error"]  # type: ignore[no-any-return]


def _on_chain(api: Api, address: str) -> tuple[int, bool]:
    kind, frozen = api.service.ctx.chain.call("participant", address)
    return int(kind), bool(frozen)


@pytest.fixture(scope="module")
def supervisor(api: Api) -> Api:
    return api.as_(api.key_for("supervisor"))


# ------------------------------------------------------------------ registration
def test_register_enterprise_returns_fields_and_registers_on_chain(api: Api) -> None:
    code = credit_code()
    before = api.service.tx_count("register")
    e = api.enterprise(name="Hebei Zhisuan Ltd", credit_code=code.lower(), region_code="131000",
                       industry="software", size="micro")  # fmt: skip
    assert {k: e[k] for k in ("kind", "name", "credit_code", "region_code", "industry", "size", "categories",
                              "frozen")} == {"kind": "enterprise", "name": "Hebei Zhisuan Ltd", "credit_code": code,
                                             "region_code": "131000", "industry": "software", "size": "micro",
                                             "categories": [], "frozen": False}  # fmt: skip
    assert isinstance(e["id"], int) and e["created_at"]
    assert Web3.is_checksum_address(e["address"])
    assert _on_chain(api, e["address"]) == (ENTERPRISE, False)
    assert api.service.tx_count("register") == before + 1


def test_register_provider_returns_categories_and_registers_on_chain(api: Api) -> None:
    p = api.provider(categories=["supercomputing", "intelligent"], region_code="110000")
    assert (p["kind"], p["categories"], p["region_code"], p["size"]) == (
        "provider", ["intelligent", "supercomputing"], "110000", "")  # fmt: skip
    assert Web3.is_checksum_address(p["address"])
    assert _on_chain(api, p["address"]) == (PROVIDER, False)


def _swap_last(code: str) -> str:
    return code[:17] + next(c for c in ALPHABET if c != code[17])


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_swap_last, "check character"),
        *[(lambda c, ch=ch: c[:8] + ch + c[9:], f"'{ch}'") for ch in "IOSVZ"],  # forbidden letters
        (lambda c: c[:8] + "o" + c[9:], "'O'"),  # lower case is read as upper case
    ],
    ids=["check-digit", "I", "O", "S", "V", "Z", "lower-o"],
)
def test_invalid_credit_code_is_refused_with_the_reason(api: Api, make: Any, says: str) -> None:
    before = api.service.tx_count()
    error = _refused(api.post("/v1/participants/enterprises", {"name": "X", "credit_code": make(credit_code())}),
                     422, "invalid_input")  # fmt: skip
    assert says in error["message"] and error["details"]["field"] == "credit_code"
    assert api.service.tx_count() == before


@pytest.mark.parametrize("code", [credit_code()[:17], credit_code() + "1"], ids=["17-chars", "19-chars"])
def test_credit_code_of_wrong_length_is_refused(api: Api, code: str) -> None:
    body = {"name": "X", "credit_code": code, "categories": ["general"]}
    error = _refused(api.post("/v1/participants/providers", body), 422, "invalid_input")
    (problem,) = error["details"]["problems"]
    assert problem["field"] == "body.credit_code" and "18 characters" in problem["problem"]


def test_duplicate_credit_code_is_refused(api: Api) -> None:
    code = credit_code()
    api.enterprise(credit_code=code)
    before = api.service.tx_count()
    _refused(api.post("/v1/participants/providers", {"name": "Copy", "credit_code": f" {code.lower()} ",
                                                     "categories": ["general"]}), 409, "already_exists")  # fmt: skip
    assert api.service.tx_count() == before


@pytest.mark.parametrize(
    ("path", "change", "field"),
    [
        ("enterprises", {"size": "huge"}, "body.size"),
        ("providers", {"categories": ["quantum"]}, "body.categories.0"),
        ("providers", {"categories": []}, "body.categories"),
        ("enterprises", {"name": ""}, "body.name"),
        ("enterprises", {"wallet": "0x00"}, "body.wallet"),  # unknown fields are refused, not ignored
    ],
)
def test_invalid_registration_fields_are_refused(api: Api, path: str, change: dict[str, Any], field: str) -> None:
    body = {"name": "X", "credit_code": credit_code(), **({"categories": ["general"]} if path == "providers" else {}),
            **change}  # fmt: skip
    error = _refused(api.post(f"/v1/participants/{path}", body), 422, "invalid_input")
    assert field in [p["field"] for p in error["details"]["problems"]]


def test_only_admin_registers(api: Api, supervisor: Api) -> None:
    body = {"name": "X", "credit_code": credit_code()}
    _refused(supervisor.post("/v1/participants/enterprises", body), 403, "forbidden")
    _refused(api.as_("cvl_nope_nope").post("/v1/participants/enterprises", body), 401, "unauthenticated")


# ------------------------------------------------------------------ reading
def test_list_filters_by_kind_and_paginates(api: Api) -> None:
    made = [api.enterprise()["id"] for _ in range(3)] + [api.provider()["id"]]
    every = api.ok(api.get("/v1/participants", limit=500))
    assert set(made) <= {p["id"] for p in every} and [p["id"] for p in every] == sorted(p["id"] for p in every)
    enterprises = api.ok(api.get("/v1/participants", kind="enterprise", limit=500))
    assert {p["kind"] for p in enterprises} == {"enterprise"} and made[3] not in {p["id"] for p in enterprises}
    page = api.ok(api.get("/v1/participants", kind="enterprise", offset=1, limit=2))
    assert [p["id"] for p in page] == [p["id"] for p in enterprises[1:3]]
    assert api.ok(api.get("/v1/participants", kind="provider", offset=10_000)) == []


def test_get_participant_is_visible_to_staff_and_to_itself_only(api: Api, supervisor: Api) -> None:
    mine, other = api.enterprise(), api.enterprise()
    assert api.ok(supervisor.get(f"/v1/participants/{mine['id']}"))["address"] == mine["address"]
    as_mine = api.as_(api.key_for("enterprise", mine["id"]))
    assert api.ok(as_mine.get(f"/v1/participants/{mine['id']}")) == mine
    _refused(as_mine.get(f"/v1/participants/{other['id']}"), 404, "not_found")  # not theirs: does not exist
    _refused(as_mine.get("/v1/participants"), 403, "forbidden")
    _refused(api.get("/v1/participants/999999"), 404, "not_found")


# ------------------------------------------------------------------ freezing
def test_supervisor_freezes_and_unfreezes_on_chain(api: Api, supervisor: Api) -> None:
    e = api.enterprise()
    key = api.as_(api.key_for("enterprise", e["id"]))
    frozen = api.ok(supervisor.post(f"/v1/participants/{e['id']}/freeze", {"reason_code": 7}))
    assert frozen["frozen"] is True and _on_chain(api, e["address"]) == (ENTERPRISE, True)
    _refused(key.get(f"/v1/participants/{e['id']}"), 403, "account_frozen")  # a frozen participant's key stops
    before = api.service.tx_count()
    _refused(supervisor.post(f"/v1/participants/{e['id']}/freeze", {}), 409, "invalid_state")
    assert api.service.tx_count() == before
    assert api.ok(supervisor.post(f"/v1/participants/{e['id']}/unfreeze"))["frozen"] is False
    assert _on_chain(api, e["address"]) == (ENTERPRISE, False)
    assert api.ok(key.get(f"/v1/participants/{e['id']}"))["frozen"] is False
    _refused(supervisor.post(f"/v1/participants/{e['id']}/unfreeze"), 409, "invalid_state")
    assert api.service.tx_count() == before + 1


def test_freeze_refusals(api: Api, supervisor: Api) -> None:
    e = api.enterprise()
    _refused(api.post(f"/v1/participants/{e['id']}/freeze", {}), 403, "forbidden")  # admin is not a supervisor
    _refused(supervisor.post("/v1/participants/999999/freeze", {}), 404, "not_found")
    _refused(supervisor.post(f"/v1/participants/{e['id']}/freeze", {"reason_code": 0}), 422, "invalid_input")
    assert _on_chain(api, e["address"]) == (ENTERPRISE, False)


# ------------------------------------------------------------------ related parties
def test_related_party_is_declared_and_withdrawn_on_chain(api: Api) -> None:
    e, p = api.enterprise(), api.provider()
    body = {"enterprise_id": e["id"], "provider_id": p["id"], "related": True}
    assert api.ok(api.post("/v1/related-parties", body)) == body
    assert api.service.ctx.chain.call("isRelatedParty", e["address"], p["address"]) is True
    api.ok(api.post("/v1/related-parties", {**body, "related": False}))
    assert api.service.ctx.chain.call("isRelatedParty", e["address"], p["address"]) is False


def test_related_party_needs_an_enterprise_and_a_provider(api: Api, supervisor: Api) -> None:
    e, p = api.enterprise(), api.provider()
    before = api.service.tx_count()
    _refused(api.post("/v1/related-parties", {"enterprise_id": p["id"], "provider_id": e["id"]}), 404, "not_found")
    _refused(supervisor.post("/v1/related-parties", {"enterprise_id": e["id"], "provider_id": p["id"]}),
             403, "forbidden")  # fmt: skip
    assert api.service.tx_count() == before


# ------------------------------------------------------------------ API keys
@pytest.mark.parametrize("role", ["admin", "issuer", "finance", "supervisor", "enterprise", "provider"])
def test_create_key_for_each_role(api: Api, role: str) -> None:
    make = {"enterprise": api.enterprise, "provider": api.provider}.get(role)
    pid = make()["id"] if make else None
    created = api.ok(api.post("/v1/api-keys", {"role": role, "participant_id": pid, "label": f"{role} key"}), 201)
    assert (created["role"], created["participant_id"], created["label"], created["revoked_at"]) == (
        role, pid, f"{role} key", None)  # fmt: skip
    assert created["secret"].startswith(f"cvl_{created['id']}_")
    api.ok(api.as_(created["secret"]).get("/v1/programmes"))  # the new key authenticates


@pytest.mark.parametrize(
    ("role", "participant", "status", "code"),
    [
        ("enterprise", None, 422, "invalid_input"),
        ("provider", None, 422, "invalid_input"),
        ("enterprise", "provider", 422, "invalid_input"),
        ("provider", "enterprise", 422, "invalid_input"),
        ("issuer", "enterprise", 422, "invalid_input"),
        ("admin", "provider", 422, "invalid_input"),
        ("enterprise", "unknown", 404, "not_found"),
        ("auditor", None, 422, "invalid_input"),
    ],
)
def test_key_role_and_participant_must_match(api: Api, role: str, participant: str | None, status: int,
                                             code: str) -> None:  # fmt: skip
    pid = {None: None, "unknown": 999999, "provider": api.provider, "enterprise": api.enterprise}[participant]
    pid = pid()["id"] if callable(pid) else pid
    before = len(api.ok(api.get("/v1/api-keys")))
    _refused(api.post("/v1/api-keys", {"role": role, "participant_id": pid}), status, code)
    assert len(api.ok(api.get("/v1/api-keys"))) == before


def test_key_listing_never_shows_secrets_and_revoke_disables(api: Api) -> None:
    created = api.ok(api.post("/v1/api-keys", {"role": "finance", "label": "books"}), 201)
    listing = api.get("/v1/api-keys")
    keys = api.ok(listing)
    assert created["secret"] not in listing.text and hashlib.sha256(created["secret"].encode()).hexdigest() \
        not in listing.text  # fmt: skip
    assert all(set(k) == {"id", "role", "participant_id", "label", "revoked_at", "created_at"} for k in keys)
    assert created["id"] in {k["id"] for k in keys}
    revoked = api.ok(api.post(f"/v1/api-keys/{created['id']}/revoke"))
    assert revoked["id"] == created["id"] and revoked["revoked_at"] is not None and "secret" not in revoked
    _refused(api.as_(created["secret"]).get("/v1/programmes"), 401, "unauthenticated")
    assert api.ok(api.post(f"/v1/api-keys/{created['id']}/revoke"))["revoked_at"] == revoked["revoked_at"]
    _refused(api.post("/v1/api-keys/ffffffffffff/revoke"), 404, "not_found")
    _refused(api.as_(api.key_for("issuer")).get("/v1/api-keys"), 403, "forbidden")
