"""Finding: an invoice typed with fullwidth digits (２５２２…), or with U+200B / U+2060 inside, hashed differently
and got a second confirmed subsidy on chain. Invoice numbers are now read in NFKC, upper-cased, stripped of spaces
and hyphens, and must then be digits and Latin letters: look-alikes are the same invoice, invisible characters a 422.
"""

from __future__ import annotations

import random

import pytest

from backend.invoices import canonical, invoice_hash
from tests.api.support import Api
from tests.security.claims_world import Claims, claims_world

pytestmark = pytest.mark.both_databases
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.fixture
def world(api: Api) -> Claims:
    return claims_world(api, providers=2)


def _digits() -> str:
    return "25" + "".join(random.choices("0123456789", k=18))  # a 20-digit fully digital e-invoice number


def test_claim_refuses_fullwidth_digit_invoice_duplicate(api: Api, world: Claims) -> None:
    number = _digits()
    first = api.ok(world.claim(invoice_number=number), 201)
    api.ok(world.confirm(first))
    held = world.balance()
    for by in (0, 1):  # the same provider, and another one
        again = world.claim(by=by, invoice_number=number.translate(FULLWIDTH))
        assert (again.status_code, again.json()["error"]["code"]) == (409, "invoice_already_redeemed"), again.text
    assert world.burns(first["invoice_hash"]) == 1 and world.balance() == held


@pytest.mark.parametrize("invisible", ["\u200b", "\u2060"], ids=["zero-width-space", "word-joiner"])
def test_claim_refuses_invoice_with_an_invisible_character(api: Api, world: Claims, invisible: str) -> None:
    number = _digits()
    first = api.ok(world.claim(invoice_number=number), 201)
    api.ok(world.confirm(first))
    before = api.service.row_counts()
    for by in (0, 1):
        again = world.claim(by=by, invoice_number=number[:10] + invisible + number[10:])
        body = again.json()["error"]
        assert (again.status_code, body["code"]) == (422, "invalid_input"), again.text
        assert [(p["field"], p["type"]) for p in body["details"]["problems"]] == [
            ("body.invoice_number", "unsafe_characters")
        ]
        assert invisible not in again.text and number not in again.text  # named by code point, never echoed
    assert api.service.row_counts() == before
    assert world.burns(first["invoice_hash"]) == 1


@pytest.mark.parametrize(
    ("typed", "problem"),
    [("25/0001", "U+002F"), ("FP_01", "U+005F"), ("２５．01", "U+002E"), (" - ", None)],
)
def test_claim_refuses_invoice_numbers_outside_the_alphabet(
    api: Api,
    world: Claims,
    typed: str,
    problem: str | None,
) -> None:
    before = api.service.row_counts()
    refused = world.claim(invoice_number=typed)
    body = refused.json()["error"]
    assert (refused.status_code, body["code"]) == (422, "invalid_invoice_number"), refused.text
    assert body["details"] == {"field": "invoice_number", "character": problem}
    assert api.service.row_counts() == before


def test_lookalikes_of_one_invoice_share_its_canonical_number_and_hash() -> None:
    typed = ["25220001AB", "２５２２０００１ａｂ", " 2522 0001 ab ", "2522-0001-AB", "2522\u30000001\u00a0AB"]
    typed.append("２５２２－0001AB")  # a fullwidth hyphen too
    assert {canonical(t) for t in typed} == {"25220001AB"}
    assert len({invoice_hash(t) for t in typed}) == 1


def test_a_claimed_invoice_is_kept_and_hashed_in_its_canonical_form(api: Api, world: Claims) -> None:
    number = _digits()
    claim = api.ok(world.claim(invoice_number=f"{number[:4]}-{number[4:]}".translate(FULLWIDTH)), 201)
    assert (claim["invoice_number"], claim["invoice_hash"]) == (number, invoice_hash(number))
