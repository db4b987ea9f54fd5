"""Finding: a pending claim locked its invoice number for every provider and never expired, so one provider could
squat an invoice and block another's genuine claim. A pending claim now holds the invoice for its own provider
only, and only for `claim_ttl_s` (3 days by default); between providers the chain's single use of the invoice hash
decides. The service's clock is moved forward instead of waiting."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta

import pytest

from backend.models import utcnow
from backend.services.invoice_claims import void_expired
from backend.settings import Settings
from tests.api.support import Api, Service, invoice_number
from tests.security.claims_world import FUNDED, Claims, claims_world

pytestmark = pytest.mark.both_databases
TTL = Settings.model_fields["claim_ttl_s"].default


@pytest.fixture
def world(api: Api) -> Claims:
    return claims_world(api, providers=2)


@contextmanager
def later(svc: Service, seconds: int) -> Iterator[None]:
    """The service's clock `seconds` ahead while the block runs."""
    svc.ctx.clock = lambda: utcnow() + timedelta(seconds=seconds)
    try:
        yield
    finally:
        svc.ctx.clock = utcnow


def _code(response: object) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]  # type: ignore[attr-defined]


def test_claim_ttl_defaults_to_three_days_and_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TTL == 3 * 86400
    monkeypatch.setenv("VOUCHER_CLAIM_TTL_S", "600")
    assert Settings().claim_ttl_s == 600
    monkeypatch.setenv("VOUCHER_CLAIM_TTL_S", "0")
    with pytest.raises(ValueError, match="claim_ttl_s"):
        Settings()


def test_pending_claim_does_not_block_another_providers_claim_and_the_chain_decides(api: Api, world: Claims) -> None:
    number = invoice_number()
    squatter = api.ok(world.claim(by=0, invoice_number=number), 201)
    genuine = api.ok(world.claim(by=1, invoice_number=number), 201)
    assert _code(world.claim(by=0, invoice_number=number)) == (409, "invoice_already_redeemed")  # its own claim
    api.ok(world.confirm(genuine))
    assert _code(world.confirm(squatter)) == (409, "invoice_already_redeemed")  # the contract refused the second
    failed = api.ok(world.as_enterprise.get(f"/v1/redemptions/{squatter['id']}"))
    assert (failed["status"], failed["error_code"]) == ("failed", "invoice_already_redeemed")
    assert world.burns(genuine["invoice_hash"]) == 1
    assert world.balance() == FUNDED - genuine["amount"]  # one subsidy burnt, not two


def test_pending_claim_expires_and_can_then_be_neither_confirmed_nor_refused(api: Api, world: Claims) -> None:
    claim = api.ok(world.claim(), 201)
    held, sent = world.balance(), api.service.tx_count("redeem")
    with later(api.service, TTL - 60):
        assert api.ok(world.as_enterprise.get(f"/v1/redemptions/{claim['id']}"))["status"] == "pending"
    with later(api.service, TTL + 1):
        refused = world.as_enterprise.post(f"/v1/redemptions/{claim['id']}/refuse", {"reason": "too late"})
        assert _code(refused) == (409, "claim_expired")
        assert _code(world.confirm(claim)) == (409, "claim_expired")
    expired = api.ok(world.as_providers[0].get(f"/v1/redemptions/{claim['id']}"))
    assert (expired["status"], expired["error_code"]) == ("expired", "claim_expired")
    assert _code(world.confirm(claim)) == (409, "claim_expired")  # void for good, whatever the clock says now
    assert api.service.tx_count("redeem") == sent and world.balance() == held
    assert world.burns(claim["invoice_hash"]) == 0


def test_expired_claim_frees_the_invoice_for_its_own_provider(api: Api, world: Claims) -> None:
    number = invoice_number()
    stale = api.ok(world.claim(invoice_number=number), 201)
    with later(api.service, TTL - 60):
        assert _code(world.claim(invoice_number=number)) == (409, "invoice_already_redeemed")
    with later(api.service, TTL + 1):
        fresh = api.ok(world.claim(invoice_number=number), 201)
    assert api.ok(world.as_enterprise.get(f"/v1/redemptions/{stale['id']}"))["status"] == "expired"
    assert api.ok(world.confirm(fresh))["status"] == "confirmed"
    assert world.burns(fresh["invoice_hash"]) == 1


def test_concurrent_reclaims_of_an_expired_invoice_store_exactly_one_claim(api: Api, world: Claims) -> None:
    number = invoice_number()
    stale = api.ok(world.claim(invoice_number=number), 201)
    with later(api.service, TTL + 1), ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: world.claim(invoice_number=number), range(8)))
    assert sorted(r.status_code for r in answers) == [201] + [409] * 7, [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"invoice_already_redeemed"}
    mine = api.ok(world.as_providers[0].get("/v1/redemptions", limit=500))
    live = [r for r in mine if r["invoice_hash"] == stale["invoice_hash"] and r["status"] == "pending"]
    assert len(live) == 1 and live[0]["id"] != stale["id"]


def test_the_monitor_voids_expired_claims_so_listings_say_so_and_the_invoice_is_free(api: Api, world: Claims) -> None:
    claim = api.ok(world.claim(), 201)
    with later(api.service, TTL - 60):
        void_expired(api.service.ctx)
    assert api.ok(world.as_enterprise.get(f"/v1/redemptions/{claim['id']}"))["status"] == "pending"
    with later(api.service, TTL + 1):
        assert void_expired(api.service.ctx) >= 1
    listed = api.ok(world.as_enterprise.get("/v1/redemptions", status="expired", limit=500))
    assert claim["id"] in [r["id"] for r in listed]
    assert api.ok(world.claim(invoice_number=claim["invoice_number"]), 201)["status"] == "pending"
