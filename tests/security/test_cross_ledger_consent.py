"""Finding: every devnet had chain id 727001 and the EIP-712 domain no salt, so a second ledger deployed with the
same admin key (same address) accepted a consent signed for the first. Each devnet now has its own chain id,
so the same consent recovers to a stranger on the other ledger and is refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from backend.chain import devnet
from backend.chain.deploy import admin_account, ensure_deployed
from tests.support import ENTERPRISE, ISSUER_ROLE, PROVIDER, Ledger, ledger_of


@pytest.fixture
def two_ledgers(tmp_path: Path) -> Iterator[tuple[Ledger, Ledger]]:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    admin_account(first)
    second.mkdir(mode=0o700)
    shutil.copy2(first / "admin.key", second / "admin.key")  # the same admin key deploys both
    ledgers = []
    try:
        for folder in (first, second):
            info = devnet.up(folder, port=0, block_time=None)
            dep = ensure_deployed(folder, info.rpc_url)
            ledger = ledger_of(folder, dep)
            ledger.send(ledger.contract.functions.grantRole(ISSUER_ROLE, ledger.issuer.address), ledger.admin)
            ledgers.append(ledger)
        yield ledgers[0], ledgers[1]
    finally:
        devnet.down(first)
        devnet.down(second)


def test_a_consent_signed_for_one_ledger_is_refused_by_another_with_the_same_address(
    two_ledgers: tuple[Ledger, Ledger],
) -> None:
    a, b = two_ledgers
    assert a.contract.address == b.contract.address and a.chain_id != b.chain_id
    enterprise, provider = Account.create(), Account.create()
    for ledger in (a, b):  # the same participants and programme on both
        f = ledger.contract.functions
        ledger.send(f.registerParticipant(enterprise.address, ENTERPRISE, b"\x01" * 32), ledger.admin)
        ledger.send(f.registerParticipant(provider.address, PROVIDER, b"\x02" * 32), ledger.admin)
        programme = ledger.create_programme([provider.address])
        ledger.issue(programme, enterprise.address, 10_000)
    claim = b.claim(enterprise, programme, 1_000)
    signed_for_a = a.sign(enterprise, claim, provider.address)
    with b.reverts("ConsentSignerMismatch", enterprise=enterprise.address):
        b.redeem(provider, claim, signed_for_a)
    b.redeem(provider, claim, b.sign(enterprise, claim, provider.address))  # its own consent goes through
    assert b.balance(enterprise.address, programme) == 9_000 and a.balance(enterprise.address, programme) == 10_000
