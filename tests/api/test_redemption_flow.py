"""The provider redemption flow over HTTP: claim, confirm (burn on chain) or refuse, each refusal coded."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.support import Api, Funded, claim_body, funded, invoice_number

pytestmark = pytest.mark.both_databases


@pytest.fixture
def parties(api: Api) -> Funded:
    return funded(api)


def test_claim_computes_subsidy_from_ratio_and_confirm_burns_on_chain(api: Api, parties: Funded) -> None:
    claim = api.ok(parties.claim(invoice_amount=20_000_00), 201)
    assert (claim["status"], claim["amount"]) == ("pending", 10_000_00)  # 50% of ¥20,000
    done = api.ok(parties.confirm(claim))
    assert done["status"] == "confirmed" and done["tx_hash"].startswith("0x") and done["block_number"] > 0
    balances = api.ok(parties.as_enterprise.get(f"/v1/enterprises/{parties.enterprise['id']}/balances"))
    assert {b["programme_id"]: b["balance"] for b in balances}[parties.programme["id"]] == 90_000_00
    chain = api.service.ctx.chain
    assert chain.balance(parties.enterprise["address"], parties.programme["id"]) == 90_000_00
    assert chain.programme(parties.programme["id"]).redeemed == 10_000_00


def test_claim_beyond_the_balance_is_refused_and_a_smaller_amount_may_be_asked(api: Api, parties: Funded) -> None:
    # The default is the ratio's share, never quietly cut to the balance: that would tell the provider the balance.
    refused = parties.claim(invoice_amount=1_000_000_00)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "insufficient_balance")
    claim = api.ok(parties.claim(invoice_amount=1_000_000_00, amount=100_000_00), 201)
    assert claim["amount"] == 100_000_00


def test_refuse_leaves_balance_and_frees_the_invoice(api: Api, parties: Funded) -> None:
    number = invoice_number()
    claim = api.ok(parties.claim(invoice_number=number), 201)
    refused = api.ok(parties.as_enterprise.post(f"/v1/redemptions/{claim['id']}/refuse", {"reason": "not ours"}))
    assert (refused["status"], refused["error_code"]) == ("refused", "refused_by_enterprise")
    again = api.ok(parties.claim(invoice_number=number), 201)
    assert again["status"] == "pending"
    assert api.service.ctx.chain.balance(parties.enterprise["address"], parties.programme["id"]) == 100_000_00


def test_confirm_twice_is_refused_as_invalid_state(api: Api, parties: Funded) -> None:
    claim = api.ok(parties.claim(), 201)
    api.ok(parties.confirm(claim))
    again = parties.confirm(claim)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "invalid_state")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": 10_000_01}, "exceeds_subsidy_ratio"),
        ({"category": "supercomputing"}, "category_not_allowed"),
        ({"invoice_amount": 0}, "invalid_input"),
        ({"invoice_amount": 2**256}, "invalid_input"),
        ({"amount": -5}, "invalid_input"),
    ],
)
def test_claim_refusals_have_distinct_codes(api: Api, parties: Funded, change: dict[str, Any], code: str) -> None:
    before = api.service.tx_count()
    response = parties.claim(**change)
    assert response.status_code in (409, 422), response.text
    assert response.json()["error"]["code"] == code
    assert api.service.tx_count() == before  # refused before any transaction


def test_reused_invoice_is_refused(api: Api, parties: Funded) -> None:
    number = invoice_number()
    claim = api.ok(parties.claim(invoice_number=number), 201)
    api.ok(parties.confirm(claim))
    again = parties.claim(invoice_number=f"  {number.lower()} ")  # same invoice, typed differently
    assert (again.status_code, again.json()["error"]["code"]) == (409, "invoice_already_redeemed")


def test_frozen_enterprise_and_provider_are_refused(api: Api, parties: Funded) -> None:
    supervisor = api.as_(api.key_for("supervisor"))
    api.ok(supervisor.post(f"/v1/participants/{parties.enterprise['id']}/freeze", {"reason_code": 4}))
    response = parties.claim()
    assert (response.status_code, response.json()["error"]["code"]) == (409, "account_frozen")
    api.ok(supervisor.post(f"/v1/participants/{parties.enterprise['id']}/unfreeze"))
    api.ok(supervisor.post(f"/v1/participants/{parties.provider['id']}/freeze", {"reason_code": 4}))
    response = parties.claim()
    assert (response.status_code, response.json()["error"]["code"]) == (403, "account_frozen")  # its key stops


def test_provider_outside_programme_is_refused(api: Api, parties: Funded) -> None:
    outsider = api.provider()
    as_outsider = api.as_(api.key_for("provider", outsider["id"]))
    body = claim_body(parties.enterprise["id"], parties.programme["id"], 1_000_00)
    response = as_outsider.post("/v1/redemptions", body)
    assert (response.status_code, response.json()["error"]["code"]) == (409, "provider_not_in_programme")


def test_related_party_is_refused(api: Api, parties: Funded) -> None:
    body = {"enterprise_id": parties.enterprise["id"], "provider_id": parties.provider["id"], "related": True}
    api.ok(api.post("/v1/related-parties", body))
    response = parties.claim()
    assert (response.status_code, response.json()["error"]["code"]) == (409, "related_party")


def test_expired_programme_is_refused(api: Api) -> None:
    provider = api.provider()
    enterprise = api.enterprise()
    now = api.chain_time()
    from tests.api.support import _iso

    programme = api.programme([provider["id"]], valid_until=_iso(now + 120))
    api.fund(enterprise, programme["id"], 1_000_00)
    api.service.ctx.chain.rpc.call("evm_increaseTime", [300])
    api.service.ctx.chain.rpc.call("evm_mine", [])
    as_provider = api.as_(api.key_for("provider", provider["id"]))
    response = as_provider.post("/v1/redemptions", claim_body(enterprise["id"], programme["id"], 1_000_00))
    assert (response.status_code, response.json()["error"]["code"]) == (409, "programme_expired")
