"""A transaction whose receipt comes after the request stopped waiting: the request answers 202, and the
monitor later records the outcome exactly as the request would have. Mining is paused to make it late."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from backend.audit.reconcile import reconcile
from backend.services.monitor import sweep
from tests.api.support import Api, Service, claim_body, mining_stopped
from tests.factory import ServiceFactory


@pytest.fixture(scope="module")
def service(services: ServiceFactory, database_url: str) -> Iterator[Service]:
    yield from services.serve("late", own_contract=True, database_url=database_url, receipt_wait_s=0.3)


def _settle(api: Api) -> int:
    return sweep(api.service.ctx, older_than_s=0)


def _pending(response: Any) -> None:
    assert response.status_code == 202, response.text


def test_late_freeze_and_related_party_are_recorded(api: Api) -> None:
    enterprise, provider = api.enterprise(), api.provider()
    supervisor = api.as_(api.key_for("supervisor"))
    with mining_stopped(api):
        _pending(supervisor.post(f"/v1/participants/{enterprise['id']}/freeze", {"reason_code": 2}))
        _pending(api.post("/v1/related-parties", {"enterprise_id": enterprise["id"], "provider_id": provider["id"]}))
        assert api.ok(api.get(f"/v1/participants/{enterprise['id']}"))["frozen"] is False
    assert _settle(api) == 2
    assert api.ok(api.get(f"/v1/participants/{enterprise['id']}"))["frozen"] is True
    from backend.services.participants import is_related

    assert is_related(api.service.ctx, enterprise_id=enterprise["id"], provider_id=provider["id"])


def test_late_programme_registration_issuance_and_redemption_complete(api: Api) -> None:
    provider = api.provider()
    now = api.chain_time()
    from tests.api.support import _iso

    body = {
        "name": "late",
        "ratio_bps": 3000,
        "budget": 1_000_000_00,
        "cap_per_enterprise": 100_000_00,
        "valid_from": _iso(now - 5),
        "valid_until": _iso(now + 86400),
        "categories": ["intelligent"],
        "provider_ids": [provider["id"]],
    }
    with mining_stopped(api):
        _pending(api.post("/v1/programmes", body))
        late_enterprise = api.post(
            "/v1/participants/enterprises", {"name": "late", "credit_code": "91110108592366240" + "0"}
        )
        _pending(late_enterprise)
    assert _settle(api) >= 2
    programme = next(p for p in api.ok(api.get("/v1/programmes")) if p["name"] == "late")
    assert (programme["ratio_bps"], programme["provider_ids"]) == (3000, [provider["id"]])
    enterprise = next(
        p
        for p in api.ok(api.get("/v1/participants", kind="enterprise", limit=500))
        if p["credit_code"] == "911101085923662400"
    )
    assert api.service.ctx.chain.call("participant", enterprise["address"])[0] == 1

    as_enterprise = api.as_(api.key_for("enterprise", enterprise["id"]))
    app = api.ok(
        as_enterprise.post(
            "/v1/applications", {"programme_id": programme["id"], "amount": 50_000_00, "purpose": "late"}
        ),
        201,
    )
    with mining_stopped(api):
        _pending(api.issuer().post(f"/v1/applications/{app['id']}/approve", {"amount": 40_000_00}))
        assert api.ok(as_enterprise.get(f"/v1/applications/{app['id']}"))["status"] == "issuing"
    _settle(api)
    issued = api.ok(as_enterprise.get(f"/v1/applications/{app['id']}"))
    assert (issued["status"], issued["approved_amount"]) == ("issued", 40_000_00)

    as_provider = api.as_(api.key_for("provider", provider["id"]))
    claim = api.ok(as_provider.post("/v1/redemptions", claim_body(enterprise["id"], programme["id"], 10_000_00)), 201)
    with mining_stopped(api):
        pending = as_enterprise.post(f"/v1/redemptions/{claim['id']}/confirm")
        _pending(pending)
        assert pending.json()["status"] == "submitting"
    _settle(api)
    done = api.ok(as_enterprise.get(f"/v1/redemptions/{claim['id']}"))
    assert (done["status"], done["amount"]) == ("confirmed", 3_000_00) and done["block_number"] > 0

    supervisor = api.as_(api.key_for("supervisor"))
    with mining_stopped(api):
        _pending(
            supervisor.post(
                "/v1/revocations",
                {
                    "programme_id": programme["id"],
                    "enterprise_id": enterprise["id"],
                    "amount": 1_000_00,
                    "reason_code": 9,
                },
            )
        )
    _settle(api)
    assert reconcile(api.service.ctx).differences == []
    assert api.service.ctx.chain.balance(enterprise["address"], programme["id"]) == 40_000_00 - 3_000_00 - 1_000_00
