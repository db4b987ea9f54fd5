"""Finding: a provider's claim refused for insufficient balance carried the enterprise's exact balance in `details`
(and a claim without an amount was quietly cut to the balance, which told the same). A provider now learns only
that the balance does not cover its claim; the enterprise and staff still read the figure where they ask."""

from __future__ import annotations

import httpx
import pytest

from backend.money import yuan
from tests.api.support import Api
from tests.security.claims_world import FUNDED, Claims, claims_world

pytestmark = pytest.mark.both_databases


@pytest.fixture
def world(api: Api) -> Claims:
    return claims_world(api)


def _tells_nothing_of(response: httpx.Response, balance: int) -> None:
    for figure in (str(balance), yuan(balance), yuan(balance).lstrip("¥"), f"{balance / 100:.2f}"):
        assert figure not in response.text, response.text


@pytest.mark.parametrize("asked", [None, FUNDED + 1], ids=["ratio-share", "explicit"])
def test_provider_refused_for_insufficient_balance_is_not_told_the_balance(
    api: Api, world: Claims, asked: int | None
) -> None:
    before = api.service.row_counts()
    fields = {"invoice_amount": 1_000_000_00} | ({"amount": asked} if asked else {})
    refused = world.claim(**fields)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "insufficient_balance")
    assert refused.json()["error"]["details"] == {}
    _tells_nothing_of(refused, FUNDED)
    assert api.service.row_counts() == before


def test_balance_short_at_confirm_is_told_to_the_enterprise_and_staff_but_not_the_provider(
    api: Api, world: Claims
) -> None:
    first = api.ok(world.claim(invoice_amount=120_000_00, amount=60_000_00), 201)
    second = api.ok(world.claim(invoice_amount=120_000_00, amount=60_000_00), 201)  # both fit the balance alone
    api.ok(world.confirm(first))
    left = FUNDED - 60_000_00
    short = world.confirm(second)  # the chain refuses the burn: the enterprise, who asked, is told why
    assert (short.status_code, short.json()["error"]["code"]) == (409, "insufficient_balance")
    assert str(left) in short.json()["error"]["message"]
    seen = world.as_providers[0].get(f"/v1/redemptions/{second['id']}")
    assert (seen.json()["status"], seen.json()["error_code"]) == ("failed", "insufficient_balance")
    _tells_nothing_of(seen, left)
    listed = world.as_providers[0].get("/v1/redemptions", limit=500)
    _tells_nothing_of(listed, left)
    balances = f"/v1/enterprises/{world.enterprise['id']}/balances"
    for reader in (world.as_enterprise, api.as_(api.key_for("supervisor"))):
        figures = {b["programme_id"]: b["balance"] for b in api.ok(reader.get(balances))}
        assert figures[world.programme["id"]] == left
    assert world.as_providers[0].get(balances).status_code == 404
