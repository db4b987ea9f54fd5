"""Programme creation: parameters validated, stored and announced; providers allowed per programme."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import ADMIN_ROLE, ENTERPRISE, PROVIDER, YEAR, Ledger


def test_create_programme_stores_parameters_and_emits_event(ledger: Ledger) -> None:
    provider = ledger.new_participant(PROVIDER)
    now = ledger.now()
    params = {
        "budget": 10_000_000_00, "capPerEnterprise": 1_000_000_00, "ratioBps": 5000,
        "validFrom": now, "validUntil": now + YEAR, "categories": 0b101, "providers": [provider.address],
    }  # fmt: skip
    receipt = ledger.send(ledger.contract.functions.createProgramme(params), ledger.admin)
    (created,) = ledger.events(receipt, "ProgrammeCreated")
    pid = created["programmeId"]
    assert pid == ledger.contract.functions.programmeCount().call()
    assert created == {"programmeId": pid, **{k: v for k, v in params.items() if k != "providers"}}
    assert ledger.events(receipt, "ProgrammeProviderSet") == [
        {"programmeId": pid, "provider": provider.address, "allowed": True}
    ]
    stored = ledger.contract.functions.programme(pid).call()
    assert stored == (10_000_000_00, 1_000_000_00, 0, 0, 0, 0, 5000, now, now + YEAR, 0b101)
    assert ledger.contract.functions.isProgrammeProvider(pid, provider.address).call() is True


@pytest.mark.parametrize("ratio", [0, 10_001])
def test_ratio_outside_1_to_10000_bps_is_refused(ledger: Ledger, ratio: int) -> None:
    with ledger.reverts("ProgrammeInvalidRatio", ratioBps=ratio):
        ledger.create_programme([], ratioBps=ratio)


def test_ratio_of_exactly_100_percent_is_accepted(ledger: Ledger) -> None:
    pid = ledger.create_programme([], ratioBps=10_000)
    assert ledger.contract.functions.programme(pid).call()[6] == 10_000


def test_window_that_ends_before_it_starts_or_in_the_past_is_refused(ledger: Ledger) -> None:
    now = ledger.now()
    with ledger.reverts("ProgrammeInvalidWindow", validFrom=now + 100, validUntil=now + 100):
        ledger.create_programme([], validFrom=now + 100, validUntil=now + 100)
    with ledger.reverts("ProgrammeInvalidWindow", validFrom=now - 100, validUntil=now - 1):
        ledger.create_programme([], validFrom=now - 100, validUntil=now - 1)


@pytest.mark.parametrize(("budget", "cap"), [(0, 0), (100, 0), (100, 101), (0, 1)])
def test_budget_and_cap_must_be_positive_with_cap_within_budget(ledger: Ledger, budget: int, cap: int) -> None:
    with ledger.reverts("ProgrammeInvalidLimits", budget=budget, capPerEnterprise=cap):
        ledger.create_programme([], budget=budget, capPerEnterprise=cap)


def test_programme_without_categories_is_refused(ledger: Ledger) -> None:
    with ledger.reverts("ProgrammeNoCategories"):
        ledger.create_programme([], categories=0)


def test_only_registered_providers_can_be_allowed(ledger: Ledger) -> None:
    enterprise = ledger.new_participant(ENTERPRISE)
    with ledger.reverts("ParticipantKindMismatch", account=enterprise.address, expected=PROVIDER, actual=ENTERPRISE):
        ledger.create_programme([enterprise.address])


def test_set_programme_provider_adds_and_removes(ledger: Ledger) -> None:
    pid = ledger.create_programme([])
    provider = ledger.new_participant(PROVIDER)
    ledger.send(ledger.contract.functions.setProgrammeProvider(pid, provider.address, True), ledger.admin)
    assert ledger.contract.functions.isProgrammeProvider(pid, provider.address).call() is True
    ledger.send(ledger.contract.functions.setProgrammeProvider(pid, provider.address, False), ledger.admin)
    assert ledger.contract.functions.isProgrammeProvider(pid, provider.address).call() is False


def test_set_programme_provider_on_unknown_programme_is_refused(ledger: Ledger) -> None:
    provider = ledger.new_participant(PROVIDER)
    with ledger.reverts("ProgrammeNotFound", programmeId=999):
        ledger.send(ledger.contract.functions.setProgrammeProvider(999, provider.address, True), ledger.admin)


def test_only_admin_creates_programmes(ledger: Ledger) -> None:
    now = ledger.now()
    params: tuple[Any, ...] = (100, 10, 5000, now, now + YEAR, 1, [])
    for sender in (ledger.issuer, ledger.supervisor, ledger.finance):
        with ledger.reverts("AccessControlUnauthorizedAccount", account=sender.address, neededRole=ADMIN_ROLE):
            ledger.send(ledger.contract.functions.createProgramme(params), sender)
