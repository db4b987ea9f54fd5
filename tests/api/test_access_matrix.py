"""Who may call what: every endpoint × every caller (no key, four staff roles, two enterprises, two providers).

Forbidden roles get 403 `forbidden`, a participant asking for another participant's record gets 404 `not_found`
(foreign records do not exist for it), a caller without a key gets 401 `unauthenticated`. Allowed callers get an
exact, expected answer. Writes are defused so the matrix changes nothing shared: schema-invalid bodies, an oversized
Idempotency-Key or a business refusal (409) — all judged only AFTER authorization, which the forbidden callers (who
send the same invalid requests) prove. The few real writes hit throwaway targets (a spare key, two spare claims)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from backend.api.app import create_app
from tests.api.support import Api, invoice_number

pytestmark = pytest.mark.both_databases

STAFF = frozenset({"admin", "issuer", "finance", "supervisor"})
PARTICIPANTS = frozenset({"ent_a", "ent_b", "prov_p", "prov_q"})
EVERYONE = STAFF | PARTICIPANTS
CALLERS = ["anon", *sorted(STAFF), *sorted(PARTICIPANTS)]
LONG_IDEM = "x" * 201  # over the header's max_length: a validation error once the caller is authorized


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # formatted with World.ids
    allowed: frozenset[str]
    ok: tuple[int, str | None]  # the exact status and error code every allowed caller gets
    body: dict[str, Any] | None = None
    hidden: frozenset[str] = frozenset()  # participants for whom the record does not exist: 404
    idem: str | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def row(method: str, path: str, allowed: frozenset[str] | set[str], ok: tuple[int, str | None], **kw: Any) -> Row:
    kw["hidden"] = frozenset(kw.get("hidden", ()))
    return Row(method, path, frozenset(allowed), ok, **kw)


OK, BAD, STATE = (200, None), (422, "invalid_input"), (409, "invalid_state")
A_OWNS, P_OWNS = STAFF | {"ent_a"}, STAFF | {"prov_p"}
NOT_A, NOT_P = PARTICIPANTS - {"ent_a"}, PARTICIPANTS - {"prov_p"}
P_SEES = {"admin", "finance", "supervisor", "prov_p"}  # a settlement: finance and oversight, and its provider
MATRIX = [
    # participants, related parties, API keys
    row("POST", "/v1/participants/enterprises", {"admin"}, BAD, body={}),
    row("POST", "/v1/participants/providers", {"admin"}, BAD, body={}),
    row("GET", "/v1/participants", STAFF, OK),
    row("GET", "/v1/participants/{a}", A_OWNS, OK, hidden=NOT_A),
    row("GET", "/v1/participants/{p}", P_OWNS, OK, hidden=NOT_P),
    row("POST", "/v1/participants/{a}/freeze", {"supervisor"}, BAD, body={"reason_code": 0}),
    row("POST", "/v1/participants/{a}/unfreeze", {"supervisor"}, STATE),  # A is not frozen
    row("POST", "/v1/related-parties", {"admin"}, BAD, body={"enterprise_id": 0, "provider_id": 0}),
    row("POST", "/v1/api-keys", {"admin"}, BAD, body={"role": "root"}),
    row("GET", "/v1/api-keys", {"admin"}, OK),
    row("POST", "/v1/api-keys/{spare_key}/revoke", {"admin"}, OK),
    # programmes and balances
    row("POST", "/v1/programmes", {"admin"}, BAD, body={}),
    row("GET", "/v1/programmes", EVERYONE, OK),
    row("GET", "/v1/programmes/{prog}", EVERYONE, OK),
    row("POST", "/v1/programmes/{prog}/reclaim", {"issuer"}, (409, "programme_still_active")),
    row("GET", "/v1/enterprises/{a}/balances", A_OWNS, OK, hidden=NOT_A),
    # applications
    row("POST", "/v1/applications", {"ent_a", "ent_b"}, BAD, body={"programme_id": 1, "amount": 0, "purpose": "x"}),
    row("GET", "/v1/applications", EVERYONE, OK),
    row("GET", "/v1/applications/{app}", A_OWNS, OK, hidden=NOT_A),
    row("POST", "/v1/applications/{app}/approve", {"issuer"}, BAD, body={"amount": 0}),
    row("POST", "/v1/applications/{app}/reject", {"issuer"}, BAD, body={"reason": ""}),
    row("POST", "/v1/applications/approve-batch", {"issuer"}, BAD, body={"application_ids": []}),
    # redemptions: confirm/refuse check ownership in the handler, after body validation, so they get valid
    # requests on spare claims (only A, the last caller, really confirms or refuses)
    row("POST", "/v1/redemptions", {"prov_p", "prov_q"}, BAD, body={}),
    row("GET", "/v1/redemptions", EVERYONE, OK),
    row("GET", "/v1/redemptions/{claim}", A_OWNS | {"prov_p"}, OK, hidden={"ent_b", "prov_q"}),
    row("POST", "/v1/redemptions/{to_confirm}/confirm", {"ent_a"}, OK, hidden={"ent_b"}),
    row("POST", "/v1/redemptions/{to_refuse}/refuse", {"ent_a"}, OK, body={"reason": "no"}, hidden={"ent_b"}),
    # supervision
    row("POST", "/v1/revocations", {"supervisor"}, BAD, body={"programme_id": 0}),
    row("POST", "/v1/pause", {"admin", "supervisor"}, BAD, idem=LONG_IDEM),
    row("POST", "/v1/unpause", {"admin"}, STATE),  # not paused
    row("GET", "/v1/health", EVERYONE | {"anon"}, OK),
    # audit trail and reports
    row("GET", "/v1/audit/events", STAFF, OK),
    row("GET", "/v1/audit/enterprises/{a}/statement", A_OWNS, OK, hidden=NOT_A),
    row("GET", "/v1/audit/providers/{p}/statement", P_OWNS, OK, hidden=NOT_P),
    row("GET", "/v1/audit/reconciliation", {"admin", "supervisor", "finance"}, OK),
    row("GET", "/v1/reports/economic", STAFF, OK),
    row("GET", "/v1/reports/social", STAFF, OK),
    row("GET", "/v1/reports/competition", STAFF, OK),
    # settlements
    row("POST", "/v1/settlements", {"prov_p", "prov_q", "finance"}, BAD, body={}),
    row("GET", "/v1/settlements", {"admin", "finance", "supervisor", "prov_p", "prov_q"}, OK),
    row("GET", "/v1/settlements/{settlement}", P_SEES, OK, hidden={"prov_q"}),
    row("GET", "/v1/settlements/{settlement}/export", P_SEES, OK, hidden={"prov_q"}),
    row("POST", "/v1/settlements/{settlement}/approve", {"finance"}, BAD, idem=LONG_IDEM),
    row("POST", "/v1/settlements/{settlement}/return", {"finance"}, BAD, body={"reason": ""}),
    row("POST", "/v1/participants/{a}/rotate-key", {"admin"}, BAD, idem=LONG_IDEM),
    row("GET", "/v1/transactions/{tx}", STAFF, OK),
]


@dataclass
class World:
    api: Api
    ids: dict[str, Any]
    keys: dict[str, str | None] = field(default_factory=dict)

    def call(self, caller: str, method: str, path: str, body: Any = None, idem: str | None = None) -> httpx.Response:
        key = self.keys[caller]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if idem is not None:
            headers["Idempotency-Key"] = idem
        return self.api.http.request(method, path, json=body, headers=headers)


def _claim(as_provider: Api, enterprise_id: int, programme_id: int) -> int:
    body = {"enterprise_id": enterprise_id, "programme_id": programme_id, "invoice_number": invoice_number(),
            "invoice_amount": 2_000_00, "category": "intelligent"}  # fmt: skip
    return int(as_provider.ok(as_provider.post("/v1/redemptions", body), 201)["id"])


@pytest.fixture(scope="module")
def world(api: Api) -> World:
    a, b, p, q = api.enterprise(), api.enterprise(), api.provider(), api.provider()
    prog = api.programme([p["id"], q["id"]])["id"]
    api.fund(a, prog, 100_000_00)
    api.fund(b, prog, 100_000_00)
    keys: dict[str, str | None] = {"anon": None} | {role: api.key_for(role) for role in STAFF}
    keys |= {"ent_a": api.key_for("enterprise", a["id"]), "ent_b": api.key_for("enterprise", b["id"]),
             "prov_p": api.key_for("provider", p["id"]), "prov_q": api.key_for("provider", q["id"])}  # fmt: skip
    as_a, as_p, as_q = (api.as_(str(keys[c])) for c in ("ent_a", "prov_p", "prov_q"))
    app = api.ok(as_a.post("/v1/applications", {"programme_id": prog, "amount": 1_000_00, "purpose": "pending"}), 201)
    spare = api.ok(api.post("/v1/api-keys", {"role": "finance", "label": "spare"}), 201)["id"]
    ids = {"a": a["id"], "b": b["id"], "p": p["id"], "q": q["id"], "prog": prog, "app": app["id"], "spare_key": spare}
    # P claims three times on A (one stays pending, two are spares for confirm/refuse), Q once on B
    for name in ("claim", "to_confirm", "to_refuse"):
        ids[name] = _claim(as_p, a["id"], prog)
    ids["q_claim"] = _claim(as_q, b["id"], prog)
    settled = _claim(as_p, a["id"], prog)
    api.ok(api.as_(str(keys["ent_a"])).post(f"/v1/redemptions/{settled}/confirm"))
    period = {"provider_id": p["id"], "period_from": "2000-01-01T00:00:00Z", "period_until": "2200-01-01T00:00:00Z"}
    ids["settlement"] = api.ok(as_p.post("/v1/settlements", period), 201)["id"]
    ids["tx"] = api.ok(api.get(f"/v1/redemptions/{settled}"))["tx_hash"]
    return World(api, ids, keys)


def expected(r: Row, caller: str) -> tuple[int, str | None]:
    if caller in r.allowed:
        return r.ok
    if caller == "anon":
        return 401, "unauthenticated"
    return (404, "not_found") if caller in r.hidden else (403, "forbidden")


@pytest.mark.parametrize("r", MATRIX, ids=str)
def test_access_matrix(world: World, r: Row) -> None:
    path = r.path.format(**world.ids)
    # Forbidden callers first: were one let through, it must not consume a spare target before the owner.
    refused, mismatches = 0, []
    for caller in sorted(CALLERS, key=lambda c: c in r.allowed):
        response = world.call(caller, r.method, path, r.body, r.idem)
        want_status, want_code = expected(r, caller)
        code = response.json().get("error", {}).get("code") if response.status_code >= 400 else None
        if (response.status_code, code) != (want_status, want_code):
            mismatches.append(f"{caller}: want {want_status} {want_code}, got {response.status_code} {response.text}")
        elif caller not in r.allowed:
            refused += 1
        if caller in r.hidden:  # a foreign record reads exactly like one that does not exist
            ghost = world.call(caller, r.method, re.sub(r"\{\w+\}", "999999", r.path), r.body, r.idem)
            if re.sub(r"\d+", "N", ghost.text) != re.sub(r"\d+", "N", response.text):
                mismatches.append(f"{caller}: foreign {response.text} differs from missing {ghost.text}")
    assert mismatches == [], f"{r}:\n" + "\n".join(mismatches)
    assert refused == len(set(CALLERS) - r.allowed)  # no unexpected success


def test_matrix_left_shared_targets_untouched(world: World) -> None:
    # (the spare claims are checked by their rows: A's confirm/refuse succeeds only if nobody got there first)
    api, ids = world.api, world.ids
    assert api.ok(api.get(f"/v1/redemptions/{ids['claim']}"))["status"] == "pending"
    assert api.ok(api.get(f"/v1/applications/{ids['app']}"))["status"] == "pending"
    assert api.ok(api.get(f"/v1/participants/{ids['a']}"))["frozen"] is False
    assert api.ok(api.get("/v1/health"))["paused"] is False


def test_matrix_covers_every_route() -> None:
    def shape(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "{}", path)

    documented = create_app(lambda: None).openapi()["paths"]  # type: ignore[arg-type, return-value]
    routes = {(method.upper(), shape(path)) for path, ops in documented.items() for method in ops}
    assert routes == {(r.method, shape(r.path)) for r in MATRIX}


@pytest.mark.parametrize("auth", ["", "Bearer", "Basic Zm9vOmJhcg==", "Bearer garbage", "Bearer cvl_",
                                  "Bearer cvl_nokey", "Bearer cvl_000000000000_guessed", "tampered"])  # fmt: skip
def test_missing_or_malformed_key_is_unauthenticated(world: World, auth: str) -> None:
    if auth == "tampered":  # the right key id with a wrong secret
        auth = f"Bearer {world.keys['admin']}"[:-2] + "xx"
    response = world.api.http.get("/v1/programmes", headers={"Authorization": auth} if auth else {})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "unauthenticated")


def test_revoked_key_stops_working_at_once(world: World) -> None:
    api = world.api
    new = api.ok(api.post("/v1/api-keys", {"role": "enterprise", "participant_id": world.ids["a"]}), 201)
    mine = api.as_(new["secret"])
    apply = {"programme_id": world.ids["prog"], "amount": 1_00, "purpose": "before revocation"}
    api.ok(mine.post("/v1/applications", apply, key="idem-before-revoke"), 201)
    revoked = api.ok(api.post(f"/v1/api-keys/{new['id']}/revoke"))
    assert revoked["revoked_at"] is not None
    for response in (mine.get("/v1/applications"), mine.post("/v1/applications", apply, key="idem-before-revoke")):
        assert (response.status_code, response.json()["error"]["code"]) == (401, "unauthenticated")  # no replay


@pytest.mark.parametrize("kind", ["enterprise", "provider"])
def test_frozen_participants_key_stops_and_resumes(world: World, kind: str) -> None:
    api = world.api
    who = api.enterprise() if kind == "enterprise" else api.provider()
    mine, supervisor = api.as_(api.key_for(kind, who["id"])), api.as_(str(world.keys["supervisor"]))
    path = f"/v1/participants/{who['id']}"
    assert api.ok(mine.get(path))["frozen"] is False
    api.ok(supervisor.post(f"{path}/freeze", {"reason_code": 4}))
    response = mine.get(path)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "account_frozen")
    assert api.ok(api.get(path))["frozen"] is True  # staff still see it
    api.ok(supervisor.post(f"{path}/unfreeze"))
    assert api.ok(mine.get(path))["frozen"] is False


def test_lists_are_scoped_to_the_caller(world: World) -> None:
    ids, api = world.ids, world.api

    def listed(caller: str, what: str, owner: str) -> set[int]:
        return {row[owner] for row in api.ok(world.call(caller, "GET", f"/v1/{what}"))}

    assert listed("ent_a", "applications", "enterprise_id") == {ids["a"]}
    assert listed("ent_b", "applications", "enterprise_id") == {ids["b"]}
    assert listed("prov_p", "applications", "enterprise_id") == set()
    assert {ids["a"], ids["b"]} <= listed("finance", "applications", "enterprise_id")
    assert listed("ent_a", "redemptions", "enterprise_id") == {ids["a"]}
    assert listed("ent_b", "redemptions", "enterprise_id") == {ids["b"]}
    assert listed("prov_p", "redemptions", "provider_id") == {ids["p"]}
    assert listed("prov_q", "redemptions", "provider_id") == {ids["q"]}
    assert {ids["p"], ids["q"]} <= listed("supervisor", "redemptions", "provider_id")
    mine = {row["id"] for row in api.ok(world.call("ent_a", "GET", "/v1/applications"))}
    assert ids["app"] in mine and len(mine) >= 2  # the funded one and the pending one
