"""Vouchers never move between holders, and the contract says so through ERC-165 and ERC-5633."""

from __future__ import annotations

import pytest

from tests.support import ENTERPRISE, PROVIDER, Ledger


@pytest.fixture
def holder(ledger: Ledger) -> tuple[int, str]:
    provider = ledger.new_participant(PROVIDER)
    enterprise = ledger.new_participant(ENTERPRISE)
    pid = ledger.create_programme([provider.address])
    ledger.issue(pid, enterprise.address, 1_000)
    ledger.holder_account = enterprise  # type: ignore[attr-defined]
    return pid, enterprise.address


def test_safe_transfer_from_by_holder_reverts_non_transferable(ledger: Ledger, holder: tuple[int, str]) -> None:
    pid, _ = holder
    enterprise = ledger.holder_account  # type: ignore[attr-defined]
    other = ledger.new_participant(ENTERPRISE)
    fn = ledger.contract.functions.safeTransferFrom(enterprise.address, other.address, pid, 1, b"")
    with ledger.reverts("VoucherNonTransferable", **{"from": enterprise.address, "to": other.address}):
        ledger.send(fn, enterprise)
    assert ledger.balance(enterprise.address, pid) == 1_000
    assert ledger.balance(other.address, pid) == 0


def test_safe_batch_transfer_from_by_holder_reverts_non_transferable(ledger: Ledger, holder: tuple[int, str]) -> None:
    pid, _ = holder
    enterprise = ledger.holder_account  # type: ignore[attr-defined]
    other = ledger.new_participant(ENTERPRISE)
    fn = ledger.contract.functions.safeBatchTransferFrom(enterprise.address, other.address, [pid], [1], b"")
    with ledger.reverts("VoucherNonTransferable", **{"from": enterprise.address, "to": other.address}):
        ledger.send(fn, enterprise)


@pytest.mark.parametrize("caller", ["admin", "issuer", "supervisor", "finance"])
def test_transfers_by_any_other_caller_revert_without_approval(
    ledger: Ledger, holder: tuple[int, str], caller: str
) -> None:
    pid, owner = holder
    sender = getattr(ledger, caller)
    single = ledger.contract.functions.safeTransferFrom(owner, sender.address, pid, 1, b"")
    with ledger.reverts("ERC1155MissingApprovalForAll", operator=sender.address, owner=owner):
        ledger.send(single, sender)
    batch = ledger.contract.functions.safeBatchTransferFrom(owner, sender.address, [pid], [1], b"")
    with ledger.reverts("ERC1155MissingApprovalForAll", operator=sender.address, owner=owner):
        ledger.send(batch, sender)


@pytest.mark.parametrize("approved", [True, False])
def test_set_approval_for_all_reverts_for_every_caller(ledger: Ledger, holder: tuple[int, str], approved: bool) -> None:
    operator = ledger.new_participant(PROVIDER)
    for sender in (ledger.holder_account, ledger.admin, ledger.issuer, ledger.supervisor):  # type: ignore[attr-defined]
        fn = ledger.contract.functions.setApprovalForAll(operator.address, approved)
        with ledger.reverts("VoucherApprovalDisabled", owner=sender.address, operator=operator.address):
            ledger.send(fn, sender)


@pytest.mark.parametrize(
    ("interface_id", "supported"),
    [
        ("0xd9b67a26", True),  # ERC-1155
        ("0x911ec470", True),  # ERC-5633 soulbound
        ("0x01ffc9a7", True),  # ERC-165
        ("0x7965db0b", True),  # AccessControl
        ("0xffffffff", False),  # ERC-165 says this one is never supported
        ("0x80ac58cd", False),  # ERC-721
    ],
)
def test_supports_interface(ledger: Ledger, interface_id: str, supported: bool) -> None:
    assert ledger.contract.functions.supportsInterface(bytes.fromhex(interface_id[2:])).call() is supported


def test_erc5633_interface_id_is_the_is_soulbound_selector(ledger: Ledger) -> None:
    assert ledger.w3.keccak(text="isSoulbound(uint256)")[:4].hex() == "911ec470"


@pytest.mark.parametrize("token_id", [0, 1, 2**256 - 1])
def test_every_id_is_soulbound(ledger: Ledger, token_id: int) -> None:
    assert ledger.contract.functions.isSoulbound(token_id).call() is True
