"""Redemption: an allowed provider burns an enterprise's vouchers against a paid invoice, with its consent."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from eth_account.signers.local import LocalAccount

from tests.support import ENTERPRISE, PROVIDER, Ledger


@dataclass
class Scene:
    pid: int
    enterprise: LocalAccount
    provider: LocalAccount


@pytest.fixture
def scene(ledger: Ledger) -> Scene:
    provider = ledger.new_participant(PROVIDER)
    enterprise = ledger.new_participant(ENTERPRISE)
    pid = ledger.create_programme([provider.address], ratioBps=5000, categories=0b0110)
    ledger.issue(pid, enterprise.address, 10_000)
    return Scene(pid, enterprise, provider)


def _redeem(ledger: Ledger, s: Scene, **overrides: object) -> None:
    fields: dict[str, object] = {"category": 1, **overrides}
    r = ledger.claim(s.enterprise, s.pid, int(fields.pop("amount", 1_000)), **fields)  # type: ignore[call-overload]
    ledger.redeem(s.provider, r, ledger.sign(s.enterprise, r, s.provider.address))


def test_redeem_burns_and_emits_voucher_redeemed(ledger: Ledger, scene: Scene) -> None:
    r = ledger.claim(scene.enterprise, scene.pid, 1_000, invoice_amount=2_000, category=2)
    receipt = ledger.redeem(scene.provider, r, ledger.sign(scene.enterprise, r, scene.provider.address))
    assert ledger.events(receipt, "VoucherRedeemed") == [
        {
            "programmeId": scene.pid, "enterprise": scene.enterprise.address, "provider": scene.provider.address,
            "amount": 1_000, "invoiceAmount": 2_000, "invoiceHash": r.invoice_hash, "category": 2, "nonce": r.nonce,
        }
    ]  # fmt: skip
    (burn,) = ledger.events(receipt, "TransferSingle")
    assert (burn["from"], burn["to"], burn["value"]) == (scene.enterprise.address, "0x" + "00" * 20, 1_000)
    assert ledger.balance(scene.enterprise.address, scene.pid) == 9_000
    assert ledger.contract.functions.programme(scene.pid).call()[3] == 1_000
    assert ledger.contract.functions.isInvoiceRedeemed(r.invoice_hash).call() is True
    assert ledger.contract.functions.isNonceUsed(scene.enterprise.address, r.nonce).call() is True


def test_redeem_exactly_the_subsidy_share_is_accepted_and_one_fen_more_refused(ledger: Ledger, scene: Scene) -> None:
    _redeem(ledger, scene, amount=1_000, invoice_amount=2_000)
    with ledger.reverts("RedemptionExceedsSubsidy", amount=1_001, maxSubsidy=1_000):
        _redeem(ledger, scene, amount=1_001, invoice_amount=2_000)


def test_subsidy_share_rounds_down_to_the_fen(ledger: Ledger, scene: Scene) -> None:
    # 50% of 2,001 fen is 1,000.5 fen: the subsidy may not round up.
    with ledger.reverts("RedemptionExceedsSubsidy", amount=1_001, maxSubsidy=1_000):
        _redeem(ledger, scene, amount=1_001, invoice_amount=2_001)


def test_absurd_invoice_amount_does_not_overflow(ledger: Ledger, scene: Scene) -> None:
    with ledger.reverts("ERC1155InsufficientBalance", balance=10_000, needed=10**30):
        _redeem(ledger, scene, amount=10**30, invoice_amount=2**256 - 1)


def test_reused_invoice_is_refused(ledger: Ledger, scene: Scene) -> None:
    invoice = b"\x42" * 32
    _redeem(ledger, scene, invoice_hash=invoice)
    with ledger.reverts("InvoiceAlreadyRedeemed", invoiceHash=invoice):
        _redeem(ledger, scene, invoice_hash=invoice)


def test_invoice_is_single_use_across_programmes_and_providers(ledger: Ledger, scene: Scene) -> None:
    invoice = b"\x43" * 32
    _redeem(ledger, scene, invoice_hash=invoice)
    other_provider = ledger.new_participant(PROVIDER)
    other_pid = ledger.create_programme([other_provider.address])
    ledger.issue(other_pid, scene.enterprise.address, 5_000)
    with ledger.reverts("InvoiceAlreadyRedeemed", invoiceHash=invoice):
        _redeem(ledger, Scene(other_pid, scene.enterprise, other_provider), invoice_hash=invoice, category=0)


def test_more_than_the_balance_is_refused(ledger: Ledger, scene: Scene) -> None:
    with ledger.reverts("ERC1155InsufficientBalance", sender=scene.enterprise.address, balance=10_000, needed=10_001):
        _redeem(ledger, scene, amount=10_001, invoice_amount=30_000)


def test_zero_amount_is_refused(ledger: Ledger, scene: Scene) -> None:
    with ledger.reverts("ZeroAmount"):
        _redeem(ledger, scene, amount=0)


def test_category_outside_scope_is_refused(ledger: Ledger, scene: Scene) -> None:
    with ledger.reverts("CategoryNotAllowed", programmeId=scene.pid, category=0):
        _redeem(ledger, scene, category=0)
    with ledger.reverts("CategoryNotAllowed", programmeId=scene.pid, category=255):
        _redeem(ledger, scene, category=255)


def test_provider_outside_programme_is_refused(ledger: Ledger, scene: Scene) -> None:
    outsider = ledger.new_participant(PROVIDER)
    with ledger.reverts("ProviderNotInProgramme", programmeId=scene.pid, provider=outsider.address):
        _redeem(ledger, replace(scene, provider=outsider))


def test_unregistered_or_enterprise_caller_cannot_redeem(ledger: Ledger, scene: Scene) -> None:
    stranger = ledger.new_participant(PROVIDER, register=False)
    with ledger.reverts("ParticipantKindMismatch", account=stranger.address, expected=PROVIDER, actual=0):
        _redeem(ledger, replace(scene, provider=stranger))
    with ledger.reverts("ParticipantKindMismatch", account=scene.enterprise.address, expected=PROVIDER):
        _redeem(ledger, replace(scene, provider=scene.enterprise))


def test_frozen_provider_cannot_redeem(ledger: Ledger, scene: Scene) -> None:
    ledger.send(ledger.contract.functions.freeze(scene.provider.address, 3), ledger.supervisor)
    with ledger.reverts("AccountIsFrozen", account=scene.provider.address):
        _redeem(ledger, scene)


def test_frozen_enterprise_vouchers_cannot_be_redeemed(ledger: Ledger, scene: Scene) -> None:
    ledger.send(ledger.contract.functions.freeze(scene.enterprise.address, 3), ledger.supervisor)
    with ledger.reverts("AccountIsFrozen", account=scene.enterprise.address):
        _redeem(ledger, scene)


def test_related_party_redemption_is_refused(ledger: Ledger, scene: Scene) -> None:
    fn = ledger.contract.functions.setRelatedParty(scene.enterprise.address, scene.provider.address, True)
    ledger.send(fn, ledger.admin)
    with ledger.reverts("RelatedPartyRedemption", enterprise=scene.enterprise.address, provider=scene.provider.address):
        _redeem(ledger, scene)


def test_redeem_before_window_opens_is_refused(ledger: Ledger, scene: Scene) -> None:
    now = ledger.now()
    pid = ledger.create_programme([scene.provider.address], validFrom=now + 1_000, validUntil=now + 2_000)
    ledger.issue(pid, scene.enterprise.address, 5_000)
    with ledger.reverts("ProgrammeNotStarted", programmeId=pid, validFrom=now + 1_000):
        _redeem(ledger, replace(scene, pid=pid), category=0)


def test_redeem_after_expiry_is_refused(ledger: Ledger, scene: Scene) -> None:
    valid_until = ledger.contract.functions.programme(scene.pid).call()[8]
    ledger.travel_to(valid_until)
    with ledger.reverts("ProgrammeExpired", programmeId=scene.pid, validUntil=valid_until):
        _redeem(ledger, scene, deadline=valid_until + 3_600)


def test_redeem_in_unknown_programme_is_refused(ledger: Ledger, scene: Scene) -> None:
    with ledger.reverts("ProgrammeNotFound", programmeId=777):
        _redeem(ledger, replace(scene, pid=777))
