"""Finding: one transaction could leave the ledger without an admin (renounce or revoke of the last admin), after
which a pause could never be lifted. The admin is now one account, handed over in two steps, three days apart."""

from __future__ import annotations

from eth_account import Account
from eth_account.signers.local import LocalAccount

from tests.support import ADMIN_ROLE, Ledger

DELAY = 3 * 24 * 3600


def is_admin(ledger: Ledger, account: LocalAccount) -> bool:
    return bool(ledger.contract.functions.hasRole(ADMIN_ROLE, account.address).call())


def test_admin_cannot_renounce_at_once_so_a_pause_can_still_be_lifted(ledger: Ledger) -> None:
    f = ledger.contract.functions
    ledger.send(f.pause(), ledger.supervisor)
    with ledger.reverts("AccessControlEnforcedDefaultAdminDelay", schedule=0):
        ledger.send(f.renounceRole(ADMIN_ROLE, ledger.admin.address), ledger.admin)
    assert is_admin(ledger, ledger.admin)
    ledger.send(f.unpause(), ledger.admin)
    assert f.paused().call() is False


def test_admin_cannot_be_revoked_nor_a_second_admin_granted(ledger: Ledger) -> None:
    f, other = ledger.contract.functions, Account.create()
    with ledger.reverts("AccessControlEnforcedDefaultAdminRules"):
        ledger.send(f.revokeRole(ADMIN_ROLE, ledger.admin.address), ledger.admin)
    # a second admin could renounce or revoke the first one: the single admin changes only by handover
    with ledger.reverts("AccessControlEnforcedDefaultAdminRules"):
        ledger.send(f.grantRole(ADMIN_ROLE, other.address), ledger.admin)
    assert is_admin(ledger, ledger.admin) and not is_admin(ledger, other)
    assert f.defaultAdmin().call() == ledger.admin.address


def test_admin_handover_is_accepted_by_the_new_admin_only_after_three_days(ledger: Ledger) -> None:
    f, successor, stranger = ledger.contract.functions, Account.create(), Account.create()
    assert f.defaultAdminDelay().call() == DELAY
    receipt = ledger.send(f.beginDefaultAdminTransfer(successor.address), ledger.admin)
    schedule = ledger.now() + DELAY
    assert ledger.events(receipt, "DefaultAdminTransferScheduled") == [
        {"newAdmin": successor.address, "acceptSchedule": schedule}
    ]
    with ledger.reverts("AccessControlEnforcedDefaultAdminDelay", schedule=schedule):
        ledger.send(f.acceptDefaultAdminTransfer(), successor)
    ledger.travel_to(schedule + 1)
    with ledger.reverts("AccessControlInvalidDefaultAdmin", defaultAdmin=stranger.address):
        ledger.send(f.acceptDefaultAdminTransfer(), stranger)
    ledger.send(f.acceptDefaultAdminTransfer(), successor)
    assert is_admin(ledger, successor) and not is_admin(ledger, ledger.admin)
    ledger.send(f.pause(), ledger.supervisor)
    ledger.send(f.unpause(), successor)  # the ledger still has someone who can lift a pause
    assert f.paused().call() is False


def test_renouncing_the_admin_needs_a_handover_to_nobody_scheduled_three_days_before(ledger: Ledger) -> None:
    f = ledger.contract.functions
    ledger.send(f.beginDefaultAdminTransfer("0x" + "00" * 20), ledger.admin)
    schedule = ledger.now() + DELAY
    with ledger.reverts("AccessControlEnforcedDefaultAdminDelay", schedule=schedule):
        ledger.send(f.renounceRole(ADMIN_ROLE, ledger.admin.address), ledger.admin)
    ledger.send(f.cancelDefaultAdminTransfer(), ledger.admin)  # three days in which to think again
    ledger.travel_to(schedule + 1)
    with ledger.reverts("AccessControlEnforcedDefaultAdminDelay", schedule=0):
        ledger.send(f.renounceRole(ADMIN_ROLE, ledger.admin.address), ledger.admin)
    assert is_admin(ledger, ledger.admin)
