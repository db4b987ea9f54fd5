"""ensure_deployed on a real anvil devnet: idempotent, a complete record, a private admin key, the right chain."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from backend.chain import compiler, devnet
from backend.chain.deploy import ADMIN_KEY_FILE, CONTRACT, DEPLOYMENT_FILE, DeploymentError, ensure_deployed
from tests.support import ADMIN_ROLE

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, devnet.DevnetInfo]]:
    """A devnet of this module's own, so the admin's nonce counts exactly this module's deployments."""
    data_dir = tmp_path_factory.mktemp("deploy")
    info = devnet.up(data_dir, port=0, block_time=None)
    try:
        yield data_dir, info
    finally:
        devnet.down(data_dir)


def _anvil_well_known_keys() -> set[str]:
    """The keys every stock anvil prefunds, derived from its public mnemonic."""
    Account.enable_unaudited_hdwallet_features()
    accounts = [Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(20)]
    assert accounts[0].address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    return {a.key.hex().removeprefix("0x").lower() for a in accounts}


def test_deploy_is_idempotent(node: tuple[Path, devnet.DevnetInfo]) -> None:
    data_dir, info = node
    w3 = Web3(Web3.HTTPProvider(info.rpc_url))
    first = ensure_deployed(data_dir, info.rpc_url)
    admin = Web3.to_checksum_address(first.admin)
    assert w3.eth.get_transaction_count(admin) == 1  # one transaction: the deployment
    block = w3.eth.block_number
    second = ensure_deployed(data_dir, info.rpc_url)
    assert second == first
    assert w3.eth.get_transaction_count(admin, "pending") == 1 and w3.eth.block_number == block


def test_deployment_json_records_the_chain_and_the_contract(node: tuple[Path, devnet.DevnetInfo]) -> None:
    data_dir, info = node
    deployment = ensure_deployed(data_dir, info.rpc_url)
    raw = json.loads((data_dir / DEPLOYMENT_FILE).read_text())
    assert raw.keys() == {"chain_id", "rpc_url", "admin", "contracts"}
    assert raw["chain_id"] == info.chain_id and raw["rpc_url"] == info.rpc_url
    record = raw["contracts"][CONTRACT]
    assert record.keys() == {"address", "deploy_block", "deploy_tx", "abi"}
    assert record["abi"] == compiler.load(CONTRACT).abi
    w3 = Web3(Web3.HTTPProvider(info.rpc_url))
    receipt = w3.eth.get_transaction_receipt(record["deploy_tx"])
    assert receipt["contractAddress"] == record["address"] == deployment.voucher.address
    assert receipt["blockNumber"] == record["deploy_block"] and receipt["from"] == raw["admin"]
    # The compiled runtime code, with the immutables (EIP-712 domain caches) filled in at construction.
    assert len(w3.eth.get_code(record["address"])) == (len(compiler.load(CONTRACT).deployed_bytecode) - 2) // 2
    voucher = w3.eth.contract(address=record["address"], abi=record["abi"])
    assert voucher.functions.hasRole(ADMIN_ROLE, raw["admin"]).call()


def test_the_admin_key_is_private_fresh_and_never_recorded(node: tuple[Path, devnet.DevnetInfo]) -> None:
    data_dir, info = node
    deployment = ensure_deployed(data_dir, info.rpc_url)
    key_file = data_dir / ADMIN_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip().removeprefix("0x").lower()
    assert Account.from_key(key).address == deployment.admin
    assert key not in _anvil_well_known_keys()
    for name in (DEPLOYMENT_FILE, "devnet.json", "devnet.log"):
        assert key not in (data_dir / name).read_text().lower(), name


def test_a_deployment_for_another_chain_is_refused(node: tuple[Path, devnet.DevnetInfo], tmp_path: Path) -> None:
    data_dir, info = node
    ensure_deployed(data_dir, info.rpc_url)
    raw = json.loads((data_dir / DEPLOYMENT_FILE).read_text())
    raw["chain_id"] = 424242
    other = tmp_path / "other"
    other.mkdir()
    (other / DEPLOYMENT_FILE).write_text(json.dumps(raw))
    with pytest.raises(DeploymentError) as exc:
        ensure_deployed(other, info.rpc_url)
    message = str(exc.value)
    assert "424242" in message and str(info.chain_id) in message and info.rpc_url in message
    assert json.loads((other / DEPLOYMENT_FILE).read_text()) == raw  # left as it was
