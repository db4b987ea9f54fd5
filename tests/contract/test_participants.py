"""Registration, freezing and related-party declarations, and who may do each."""

from __future__ import annotations

import os

from eth_account import Account

from tests.support import ADMIN_ROLE, ENTERPRISE, PROVIDER, SUPERVISOR_ROLE, Ledger


def test_register_participant_records_kind_and_emits_event(ledger: Ledger) -> None:
    account = Account.create()
    ref = os.urandom(32)
    receipt = ledger.send(ledger.contract.functions.registerParticipant(account.address, PROVIDER, ref), ledger.admin)
    assert ledger.events(receipt, "ParticipantRegistered") == [
        {"account": account.address, "kind": PROVIDER, "ref": ref}
    ]
    assert ledger.contract.functions.participant(account.address).call() == [PROVIDER, False]


def test_register_twice_is_refused_with_current_kind(ledger: Ledger) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    fn = ledger.contract.functions.registerParticipant(enterprise.address, PROVIDER, b"\x00" * 32)
    with ledger.reverts("ParticipantAlreadyRegistered", account=enterprise.address, kind=ENTERPRISE):
        ledger.send(fn, ledger.admin)


def test_register_kind_none_and_zero_address_are_refused(ledger: Ledger) -> None:
    account = Account.create()
    with ledger.reverts("ParticipantKindMismatch", account=account.address, actual=0):
        ledger.send(ledger.contract.functions.registerParticipant(account.address, 0, b"\x00" * 32), ledger.admin)
    zero = "0x" + "00" * 20
    with ledger.reverts("ZeroAddress"):
        ledger.send(ledger.contract.functions.registerParticipant(zero, ENTERPRISE, b"\x00" * 32), ledger.admin)


def test_only_admin_registers(ledger: Ledger) -> None:
    account = Account.create()
    for sender in (ledger.issuer, ledger.supervisor, ledger.finance):
        fn = ledger.contract.functions.registerParticipant(account.address, ENTERPRISE, b"\x00" * 32)
        with ledger.reverts("AccessControlUnauthorizedAccount", account=sender.address, neededRole=ADMIN_ROLE):
            ledger.send(fn, sender)


def test_supervisor_freezes_and_unfreezes_with_events(ledger: Ledger) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    receipt = ledger.send(ledger.contract.functions.freeze(enterprise.address, 7), ledger.supervisor)
    assert ledger.events(receipt, "AccountFrozen") == [
        {"account": enterprise.address, "reasonCode": 7, "by": ledger.supervisor.address}
    ]
    assert ledger.contract.functions.participant(enterprise.address).call() == [ENTERPRISE, True]
    with ledger.reverts("AccountFrozenStateUnchanged", account=enterprise.address, frozen=True):
        ledger.send(ledger.contract.functions.freeze(enterprise.address, 7), ledger.supervisor)
    receipt = ledger.send(ledger.contract.functions.unfreeze(enterprise.address), ledger.supervisor)
    assert ledger.events(receipt, "AccountUnfrozen") == [
        {"account": enterprise.address, "by": ledger.supervisor.address}
    ]
    with ledger.reverts("AccountFrozenStateUnchanged", account=enterprise.address, frozen=False):
        ledger.send(ledger.contract.functions.unfreeze(enterprise.address), ledger.supervisor)


def test_only_supervisor_freezes(ledger: Ledger) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    for sender in (ledger.admin, ledger.issuer, ledger.finance, enterprise):
        with ledger.reverts("AccessControlUnauthorizedAccount", account=sender.address, neededRole=SUPERVISOR_ROLE):
            ledger.send(ledger.contract.functions.freeze(enterprise.address, 1), sender)


def test_related_party_is_recorded_and_cleared(ledger: Ledger) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    provider = ledger.new_participant(PROVIDER)
    fn = ledger.contract.functions.setRelatedParty(enterprise.address, provider.address, True)
    receipt = ledger.send(fn, ledger.admin)
    assert ledger.events(receipt, "RelatedPartySet") == [
        {"enterprise": enterprise.address, "provider": provider.address, "related": True}
    ]
    assert ledger.contract.functions.isRelatedParty(enterprise.address, provider.address).call() is True
    ledger.send(ledger.contract.functions.setRelatedParty(enterprise.address, provider.address, False), ledger.admin)
    assert ledger.contract.functions.isRelatedParty(enterprise.address, provider.address).call() is False


def test_related_party_needs_an_enterprise_and_a_provider(ledger: Ledger) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    provider = ledger.new_participant(PROVIDER)
    swapped = ledger.contract.functions.setRelatedParty(provider.address, enterprise.address, True)
    with ledger.reverts("ParticipantKindMismatch", account=provider.address, expected=ENTERPRISE, actual=PROVIDER):
        ledger.send(swapped, ledger.admin)
    with ledger.reverts("AccessControlUnauthorizedAccount", account=ledger.supervisor.address):
        ledger.send(ledger.contract.functions.setRelatedParty(enterprise.address, provider.address, True),
                    ledger.supervisor)  # fmt: skip
