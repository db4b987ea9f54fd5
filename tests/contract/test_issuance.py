"""Issuance: to registered, active enterprises only, within budget and per-enterprise cap, single or batch."""

from __future__ import annotations

import os

import pytest
from eth_account import Account

from tests.support import ENTERPRISE, ISSUER_ROLE, PROVIDER, Ledger


@pytest.fixture
def pid(ledger: Ledger) -> int:
    return ledger.create_programme([], budget=1_000, capPerEnterprise=400)


def test_issue_mints_to_enterprise_and_emits_event(ledger: Ledger, pid: int) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    ref = os.urandom(32)
    receipt = ledger.send(ledger.contract.functions.issue(pid, enterprise.address, 300, ref), ledger.issuer)
    assert ledger.events(receipt, "VoucherIssued") == [
        {"programmeId": pid, "enterprise": enterprise.address, "amount": 300, "applicationRef": ref}
    ]
    (mint,) = ledger.events(receipt, "TransferSingle")
    assert (mint["from"], mint["to"], mint["id"], mint["value"]) == ("0x" + "00" * 20, enterprise.address, pid, 300)
    assert ledger.balance(enterprise.address, pid) == 300
    assert ledger.contract.functions.issuedTo(pid, enterprise.address).call() == 300
    assert ledger.contract.functions.programme(pid).call()[2] == 300


def test_issue_to_unregistered_account_is_refused(ledger: Ledger, pid: int) -> None:
    stranger = Account.create()
    with ledger.reverts("ParticipantKindMismatch", account=stranger.address, expected=ENTERPRISE, actual=0):
        ledger.issue(pid, stranger.address, 1)


def test_issue_to_provider_is_refused(ledger: Ledger, pid: int) -> None:
    provider = ledger.new_participant(PROVIDER)
    with ledger.reverts("ParticipantKindMismatch", account=provider.address, expected=ENTERPRISE, actual=PROVIDER):
        ledger.issue(pid, provider.address, 1)


def test_issue_to_frozen_enterprise_is_refused(ledger: Ledger, pid: int) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    ledger.send(ledger.contract.functions.freeze(enterprise.address, 1), ledger.supervisor)
    with ledger.reverts("AccountIsFrozen", account=enterprise.address):
        ledger.issue(pid, enterprise.address, 1)


def test_issue_beyond_cap_is_refused_with_what_is_left(ledger: Ledger, pid: int) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    ledger.issue(pid, enterprise.address, 400)  # exactly the cap is fine
    with ledger.reverts("EnterpriseCapExceeded", programmeId=pid, enterprise=enterprise.address, available=0, amount=1):
        ledger.issue(pid, enterprise.address, 1)


def test_issue_beyond_budget_is_refused_with_what_is_left(ledger: Ledger, pid: int) -> None:
    a, b, c = (ledger.new_participant(ENTERPRISE) for _ in range(3))
    ledger.issue(pid, a.address, 400)
    ledger.issue(pid, b.address, 400)
    with ledger.reverts("ProgrammeBudgetExceeded", programmeId=pid, available=200, amount=201):
        ledger.issue(pid, c.address, 201)
    ledger.issue(pid, c.address, 200)  # exactly the budget is fine
    assert ledger.contract.functions.programme(pid).call()[2] == 1_000


def test_issue_zero_is_refused(ledger: Ledger, pid: int) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    with ledger.reverts("ZeroAmount"):
        ledger.issue(pid, enterprise.address, 0)


def test_issue_into_unknown_or_expired_programme_is_refused(ledger: Ledger, pid: int) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    with ledger.reverts("ProgrammeNotFound", programmeId=pid + 1):
        ledger.issue(pid + 1, enterprise.address, 1)
    valid_until = ledger.contract.functions.programme(pid).call()[8]
    ledger.travel_to(valid_until)
    with ledger.reverts("ProgrammeExpired", programmeId=pid, validUntil=valid_until):
        ledger.issue(pid, enterprise.address, 1)


def test_only_issuer_issues(ledger: Ledger, pid: int) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    for sender in (ledger.admin, ledger.supervisor, ledger.finance, enterprise):
        fn = ledger.contract.functions.issue(pid, enterprise.address, 1, b"\x00" * 32)
        with ledger.reverts("AccessControlUnauthorizedAccount", account=sender.address, neededRole=ISSUER_ROLE):
            ledger.send(fn, sender)


def test_issue_batch_mints_to_each_holder(ledger: Ledger, pid: int) -> None:
    holders = [ledger.new_participant(ENTERPRISE).address for _ in range(3)]
    refs = [os.urandom(32) for _ in holders]
    receipt = ledger.send(ledger.contract.functions.issueBatch(pid, holders, [100, 200, 300], refs), ledger.issuer)
    assert [(e["enterprise"], e["amount"]) for e in ledger.events(receipt, "VoucherIssued")] == list(
        zip(holders, [100, 200, 300], strict=True)
    )
    assert [ledger.balance(h, pid) for h in holders] == [100, 200, 300]


def test_issue_batch_is_all_or_nothing(ledger: Ledger, pid: int) -> None:
    good = ledger.new_participant(ENTERPRISE).address
    stranger = Account.create().address
    fn = ledger.contract.functions.issueBatch(pid, [good, stranger], [100, 100], [b"\x01" * 32, b"\x02" * 32])
    with ledger.reverts("ParticipantKindMismatch", account=stranger):
        ledger.send(fn, ledger.issuer)
    assert ledger.balance(good, pid) == 0
    assert ledger.contract.functions.programme(pid).call()[2] == 0


def test_issue_batch_counts_the_cap_across_its_own_lines(ledger: Ledger, pid: int) -> None:
    e = ledger.new_participant(ENTERPRISE).address
    fn = ledger.contract.functions.issueBatch(pid, [e, e], [300, 101], [b"\x01" * 32, b"\x02" * 32])
    with ledger.reverts("EnterpriseCapExceeded", enterprise=e, available=100, amount=101):
        ledger.send(fn, ledger.issuer)


def test_issue_batch_with_mismatched_lengths_is_refused(ledger: Ledger, pid: int) -> None:
    e = ledger.new_participant(ENTERPRISE).address
    fn = ledger.contract.functions.issueBatch(pid, [e, e], [1], [b"\x01" * 32])
    with ledger.reverts("BatchLengthMismatch", holders=2, amounts=1, refs=1):
        ledger.send(fn, ledger.issuer)
