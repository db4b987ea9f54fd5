"""Shared fixtures: one real anvil devnet per session (always stopped), a snapshot revert around each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from backend.chain import devnet
from backend.chain.deploy import Deployment, admin_account, ensure_deployed
from tests.support import FINANCE_ROLE, ISSUER_ROLE, SUPERVISOR_ROLE, Ledger, node_web3


@pytest.fixture(scope="session")
def devnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A devnet in automine mode (a block per transaction: fast, deterministic tests)."""
    data_dir = tmp_path_factory.mktemp("devnet")
    devnet.up(data_dir, port=0, block_time=None, unsafe=True)  # unsafe: tests travel in time
    try:
        yield data_dir
    finally:
        devnet.down(data_dir)


@pytest.fixture(scope="session")
def deployment(devnet_dir: Path) -> Deployment:
    info = devnet.status(devnet_dir)
    assert info is not None
    return ensure_deployed(devnet_dir, info.rpc_url)


@pytest.fixture(scope="session")
def session_ledger(deployment: Deployment, devnet_dir: Path) -> Ledger:
    w3 = node_web3(deployment.rpc_url, devnet_dir)
    contract = w3.eth.contract(address=deployment.voucher.address, abi=deployment.voucher.abi)
    ledger = Ledger(
        w3=w3,
        contract=contract,
        chain_id=deployment.chain_id,
        admin=admin_account(devnet_dir),
        issuer=Account.create(),
        finance=Account.create(),
        supervisor=Account.create(),
    )
    for role, holder in ((ISSUER_ROLE, ledger.issuer), (FINANCE_ROLE, ledger.finance),
                         (SUPERVISOR_ROLE, ledger.supervisor)):  # fmt: skip
        ledger.send(contract.functions.grantRole(role, holder.address), ledger.admin)
    return ledger


@pytest.fixture
def ledger(session_ledger: Ledger) -> Iterator[Ledger]:
    """The session's ledger, with every change this test makes undone afterwards."""
    w3 = session_ledger.w3
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    try:
        yield session_ledger
    finally:
        assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True  # type: ignore[arg-type]
