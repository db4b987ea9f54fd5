"""Finding: `migrateHolder` moved an enterprise's balances and issued total to its new key but left the old key
active with an issued total of zero, so the retired key could be issued a second cap's worth. The contract now
freezes the retired key in the same transaction."""

from __future__ import annotations

import pytest

from tests.support import ENTERPRISE, PROVIDER, Ledger

RETIRED = 900


@pytest.fixture
def programme(ledger: Ledger) -> int:
    provider = ledger.new_participant(PROVIDER)
    return ledger.create_programme([provider.address], budget=10_000, capPerEnterprise=5_000)


def test_migrate_holder_freezes_the_retired_key_so_it_gets_no_second_cap(ledger: Ledger, programme: int) -> None:
    old, new = ledger.new_participant(ENTERPRISE), ledger.new_participant(ENTERPRISE)
    ledger.issue(programme, old.address, 5_000)
    receipt = ledger.send(ledger.contract.functions.migrateHolder(old.address, new.address, [programme]), ledger.admin)
    assert ledger.events(receipt, "AccountFrozen") == [
        {"account": old.address, "reasonCode": RETIRED, "by": ledger.admin.address}
    ]
    assert ledger.contract.functions.participant(old.address).call() == [ENTERPRISE, True]
    assert ledger.contract.functions.issuedTo(programme, old.address).call() == 0
    with ledger.reverts("AccountIsFrozen", account=old.address):
        ledger.issue(programme, old.address, 5_000)
    with ledger.reverts("EnterpriseCapExceeded", enterprise=new.address, available=0, amount=1):
        ledger.issue(programme, new.address, 1)


def test_migrate_holder_freezes_a_retired_key_that_held_nothing(ledger: Ledger, programme: int) -> None:
    old, new = ledger.new_participant(ENTERPRISE), ledger.new_participant(ENTERPRISE)
    receipt = ledger.send(ledger.contract.functions.migrateHolder(old.address, new.address, []), ledger.admin)
    assert ledger.events(receipt, "VoucherMigrated") == []
    assert [e["account"] for e in ledger.events(receipt, "AccountFrozen")] == [old.address]
    with ledger.reverts("AccountIsFrozen", account=old.address):
        ledger.issue(programme, old.address, 1)


def test_migrate_holder_keeps_an_already_frozen_key_frozen_without_a_second_event(
    ledger: Ledger, programme: int
) -> None:
    old, new = ledger.new_participant(ENTERPRISE), ledger.new_participant(ENTERPRISE)
    ledger.issue(programme, old.address, 1_000)
    ledger.send(ledger.contract.functions.freeze(old.address, RETIRED), ledger.supervisor)  # the service's first step
    receipt = ledger.send(ledger.contract.functions.migrateHolder(old.address, new.address, [programme]), ledger.admin)
    assert ledger.events(receipt, "AccountFrozen") == []
    assert ledger.contract.functions.participant(old.address).call() == [ENTERPRISE, True]
    assert ledger.balance(new.address, programme) == 1_000
