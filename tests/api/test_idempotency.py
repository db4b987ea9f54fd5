"""Idempotency-Key: repeats (concurrent or later) get the first result and never a second transaction."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.api.support import Api, invoice_number

pytestmark = pytest.mark.both_databases


@pytest.fixture
def claim(api: Api) -> tuple[dict[str, Any], Api, Api]:
    provider, enterprise = api.provider(), api.enterprise()
    programme = api.programme([provider["id"]])
    api.fund(enterprise, programme["id"], 50_000_00)
    as_provider = api.as_(api.key_for("provider", provider["id"]))
    as_enterprise = api.as_(api.key_for("enterprise", enterprise["id"]))
    body = {
        "enterprise_id": enterprise["id"],
        "programme_id": programme["id"],
        "invoice_number": invoice_number(),
        "invoice_amount": 10_000_00,
        "category": "intelligent",
    }
    return api.ok(as_provider.post("/v1/redemptions", body), 201), as_provider, as_enterprise


def test_ten_concurrent_and_ten_sequential_confirms_make_one_transaction(api: Api, claim: Any) -> None:
    created, _, as_enterprise = claim
    path, key = f"/v1/redemptions/{created['id']}/confirm", str(uuid.uuid4())
    before = api.service.tx_count("redeem")
    with ThreadPoolExecutor(max_workers=10) as pool:
        concurrent = list(pool.map(lambda _: as_enterprise.post(path, key=key), range(10)))
    sequential = [as_enterprise.post(path, key=key) for _ in range(10)]
    responses = concurrent + sequential
    assert [r.status_code for r in responses] == [200] * 20
    bodies = {r.text for r in responses}
    assert len(bodies) == 1 and responses[0].json()["status"] == "confirmed"
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    assert api.service.tx_count("redeem") == before + 1
    chain = api.service.ctx.chain
    assert chain.programme(created["programme_id"]).redeemed == created["amount"]


def test_repeated_claim_creates_one_claim(api: Api, claim: Any) -> None:
    created, as_provider, _ = claim
    body = {
        "enterprise_id": created["enterprise_id"],
        "programme_id": created["programme_id"],
        "invoice_number": invoice_number(),
        "invoice_amount": 2_000_00,
        "category": "intelligent",
    }
    key = str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: as_provider.post("/v1/redemptions", body, key=key), range(10)))
    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses if r.status_code != 201][:2]
    assert len({r.json()["id"] for r in responses}) == 1


def test_same_key_with_another_body_is_refused(api: Api, claim: Any) -> None:
    created, as_provider, _ = claim
    key = str(uuid.uuid4())
    body = {
        "enterprise_id": created["enterprise_id"],
        "programme_id": created["programme_id"],
        "invoice_number": invoice_number(),
        "invoice_amount": 2_000_00,
        "category": "intelligent",
    }
    api.ok(as_provider.post("/v1/redemptions", body, key=key), 201)
    other = as_provider.post("/v1/redemptions", {**body, "invoice_amount": 3_000_00}, key=key)
    assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency_key_reused")


def test_a_refusal_is_replayed_too(api: Api, claim: Any) -> None:
    created, as_provider, _ = claim
    body = {
        "enterprise_id": created["enterprise_id"],
        "programme_id": created["programme_id"],
        "invoice_number": created["invoice_number"],
        "invoice_amount": 2_000_00,
        "category": "intelligent",
    }
    key = str(uuid.uuid4())
    first = as_provider.post("/v1/redemptions", body, key=key)
    again = as_provider.post("/v1/redemptions", body, key=key)
    assert first.status_code == again.status_code == 409
    assert first.json() == again.json()


def test_keys_are_per_api_key(api: Api, claim: Any) -> None:
    # Another caller using the same Idempotency-Key value gets its own result, not the first caller's.
    created, as_provider, as_enterprise = claim
    key = str(uuid.uuid4())
    api.ok(as_enterprise.post(f"/v1/redemptions/{created['id']}/refuse", {"reason": "duplicate"}, key=key))
    body = {
        "enterprise_id": created["enterprise_id"],
        "programme_id": created["programme_id"],
        "invoice_number": invoice_number(),
        "invoice_amount": 2_000_00,
        "category": "intelligent",
    }
    assert api.ok(as_provider.post("/v1/redemptions", body, key=key), 201)["status"] == "pending"


def test_concurrent_approvals_issue_once(api: Api) -> None:
    provider, enterprise = api.provider(), api.enterprise()
    programme = api.programme([provider["id"]])
    as_enterprise = api.as_(api.key_for("enterprise", enterprise["id"]))
    app = api.ok(
        as_enterprise.post(
            "/v1/applications", {"programme_id": programme["id"], "amount": 5_000_00, "purpose": "inference"}
        ),
        201,
    )
    issuer, key = api.issuer(), str(uuid.uuid4())
    before = api.service.tx_count("issue")
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(
            pool.map(lambda _: issuer.post(f"/v1/applications/{app['id']}/approve", {}, key=key), range(10))
        )
    assert {r.status_code for r in responses} == {200}
    assert api.service.tx_count("issue") == before + 1
    assert api.service.ctx.chain.balance(enterprise["address"], programme["id"]) == 5_000_00
