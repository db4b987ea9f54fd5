"""The real anvil devnet: start, stop, restart, crash, in tmp data dirs on free ports; every node is stopped."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from backend.chain import devnet
from backend.chain.deploy import DEPLOYMENT_FILE, Deployment, DeploymentError, admin_account, ensure_deployed
from tests.support import ENTERPRISE, ISSUER_ROLE, PROVIDER, Ledger


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    try:
        yield path
    finally:
        devnet.down(path)  # whatever the test left running


def _w3(info: devnet.DevnetInfo) -> Web3:
    return Web3(Web3.HTTPProvider(info.rpc_url))


def _chain_record(w3: Web3, address: str, holders: list[str], programme_id: int) -> dict[str, Any]:
    """Everything a restart must keep: every block, every receipt, every log, balances, the code."""
    blocks = [w3.eth.get_block(n) for n in range(w3.eth.block_number + 1)]
    tx_hashes = [tx for block in blocks for tx in block["transactions"]]
    abi = [{"name": "balanceOf", "type": "function", "stateMutability": "view",
            "inputs": [{"name": "a", "type": "address"}, {"name": "id", "type": "uint256"}],
            "outputs": [{"name": "", "type": "uint256"}]}]  # fmt: skip
    token = w3.eth.contract(address=address, abi=abi)
    return {
        "blocks": [(b["number"], b["hash"], b["stateRoot"]) for b in blocks],
        "receipts": [dict(w3.eth.get_transaction_receipt(h)) for h in tx_hashes],
        "logs": [dict(log) for log in w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"})],
        "vouchers": [token.functions.balanceOf(h, programme_id).call() for h in holders],
        "ether": [w3.eth.get_balance(h) for h in holders],
        "code": w3.eth.get_code(address),
    }


def test_up_down_up_keeps_every_block_receipt_log_and_balance(data_dir: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=None)
    deployment = ensure_deployed(data_dir, info.rpc_url)
    w3 = _w3(info)
    admin = admin_account(data_dir)
    ledger = Ledger(w3=w3, contract=w3.eth.contract(address=deployment.voucher.address, abi=deployment.voucher.abi),
                    chain_id=devnet.CHAIN_ID, admin=admin, issuer=Account.create(), finance=Account.create(),
                    supervisor=Account.create())  # fmt: skip
    ledger.send(ledger.contract.functions.grantRole(ISSUER_ROLE, ledger.issuer.address), admin)
    enterprise = ledger.new_participant(ENTERPRISE)
    provider = ledger.new_participant(PROVIDER)
    programme = ledger.create_programme([provider.address])
    ledger.issue(programme, enterprise.address, 1234)
    w3.provider.make_request("anvil_setBalance", [provider.address, hex(10**18)])  # type: ignore[arg-type]
    holders = [enterprise.address, provider.address]
    before = _chain_record(w3, deployment.voucher.address, holders, programme)
    assert len(before["receipts"]) == 6 and before["logs"] and before["vouchers"] == [1234, 0]
    nonce = w3.eth.get_transaction_count(admin.address)

    assert devnet.down(data_dir) is True
    info = devnet.up(data_dir, port=0, block_time=None)
    w3 = _w3(info)
    assert _chain_record(w3, deployment.voucher.address, holders, programme) == before
    assert w3.eth.get_balance(provider.address) == 10**18
    # The recorded contract is found again: no transaction sent, the record follows the node to its new port.
    again = ensure_deployed(data_dir, info.rpc_url)
    assert again.voucher == deployment.voucher and again.rpc_url == info.rpc_url
    assert w3.eth.get_transaction_count(admin.address) == nonce
    assert w3.eth.block_number == before["blocks"][-1][0]


def test_up_on_a_taken_port_names_it_and_port_0_picks_a_free_one(data_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((devnet.HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(devnet.DevnetError) as exc:
            devnet.up(data_dir, port=port, block_time=None)
        assert f"port {port} " in str(exc.value) and "--port 0" in str(exc.value)
        assert devnet.status(data_dir) is None
        info = devnet.up(data_dir, port=0, block_time=None)
    assert info.port not in (0, port)
    assert devnet.rpc_chain_id(info.rpc_url) == devnet.CHAIN_ID


def test_up_twice_is_the_same_node_and_down_is_idempotent(data_dir: Path) -> None:
    first = devnet.up(data_dir, port=0, block_time=None)
    second = devnet.up(data_dir, port=0, block_time=None)
    assert second == first and devnet.status(data_dir) == first
    assert devnet.down(data_dir) is True
    assert devnet.status(data_dir) is None
    assert devnet.rpc_chain_id(first.rpc_url, timeout=0.5) is None
    assert devnet.down(data_dir) is False


def _listen_addresses(pid: int) -> list[str]:
    """The local addresses (as /proc/net/tcp* writes them) of the sockets `pid` listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(fields[1])
    return found


def test_the_node_is_our_own_permissioned_chain_on_loopback(data_dir: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=None)
    w3 = _w3(info)
    assert devnet.CHAIN_ID == 727001 and w3.eth.chain_id == 727001 == info.chain_id
    assert list(w3.eth.accounts) == []  # nothing prefunded, nothing unlocked
    # Free gas: an account that never held ether gets its transaction mined.
    poor = Account.create()
    assert w3.eth.get_balance(poor.address) == 0
    tx = {"to": Account.create().address, "value": 0, "gas": 21_000, "gasPrice": 0, "nonce": 0,
          "chainId": devnet.CHAIN_ID}  # fmt: skip
    tx_hash = w3.eth.send_raw_transaction(poor.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)["status"] == 1
    # 127.0.0.1 only: every listening socket of the process is on loopback (0100007F, little-endian hex).
    assert _listen_addresses(info.pid) == [f"0100007F:{info.port:04X}"]


def test_interval_mining_makes_blocks_without_transactions(data_dir: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=0.25)
    w3 = _w3(info)
    start = w3.eth.block_number
    time.sleep(1.5)
    assert w3.eth.block_number - start >= 3
    assert w3.eth.get_block("latest")["transactions"] == []


def test_the_node_is_the_platform_anvil_binary_not_the_npm_wrapper(data_dir: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=None)
    exe = Path(f"/proc/{info.pid}/exe").resolve()
    assert exe == devnet.anvil_binary().resolve()
    assert "node_modules/@foundry-rs/anvil-" in str(exe) and exe.name == "anvil"
    argv0 = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    assert argv0 == str(devnet.anvil_binary()) and not argv0.endswith((".mjs", ".js"))


def test_kill_hard_then_up_gives_a_valid_chain_and_lost_state_is_refused(data_dir: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=None)
    deployment = ensure_deployed(data_dir, info.rpc_url)
    address = deployment.voucher.address
    devnet.kill_hard(data_dir)  # right after deploying: the last periodic dump may or may not hold it
    assert devnet.status(data_dir) is None

    info = devnet.up(data_dir, port=0, block_time=None)
    w3 = _w3(info)
    assert w3.eth.chain_id == devnet.CHAIN_ID and w3.eth.get_block("latest")["number"] >= 0
    if w3.eth.get_code(address):
        assert ensure_deployed(data_dir, info.rpc_url).voucher == deployment.voucher
    else:
        with pytest.raises(DeploymentError, match="--redeploy"):
            ensure_deployed(data_dir, info.rpc_url)

    # Deterministic loss: the state file is gone while the node is down.
    devnet.down(data_dir)
    (data_dir / "anvil-state.json").unlink()
    info = devnet.up(data_dir, port=0, block_time=None)
    w3 = _w3(info)
    assert w3.eth.block_number == 0
    path = data_dir / DEPLOYMENT_FILE
    recorded = path.read_text()
    with pytest.raises(DeploymentError) as exc:
        ensure_deployed(data_dir, info.rpc_url)
    assert "--redeploy" in str(exc.value) and address in str(exc.value)
    assert path.read_text() == recorded  # refused: the old record is left alone

    fresh = ensure_deployed(data_dir, info.rpc_url, redeploy=True)
    assert w3.eth.get_code(fresh.voucher.address)
    assert w3.eth.get_transaction_receipt(fresh.voucher.deploy_tx)["contractAddress"] == fresh.voucher.address
    assert Deployment.load(path) == fresh and fresh.rpc_url == info.rpc_url
    assert path.read_text() != recorded
    assert w3.eth.get_transaction_count(admin_account(data_dir).address) == 1


def test_a_corrupt_state_file_stops_up_with_anvils_reason_and_leaves_nothing_running(data_dir: Path) -> None:
    # What a crash in the middle of a state dump could leave behind.
    data_dir.mkdir()
    (data_dir / "anvil-state.json").write_text('{"block": {"number": "0x')
    with pytest.raises(devnet.DevnetError) as exc:
        devnet.up(data_dir, port=0, block_time=None)
    assert "anvil did not start" in str(exc.value) and "anvil-state.json" in str(exc.value)
    assert devnet.status(data_dir) is None and not (data_dir / "devnet.json").exists()


def test_a_relative_data_dir_keeps_state_across_down_and_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `make run` passes `.data`: the state file must land there, not relative to anvil's own working folder.
    monkeypatch.chdir(tmp_path)
    relative = Path(".data")
    info = devnet.up(relative, port=0, block_time=None)
    try:
        address = ensure_deployed(relative, info.rpc_url).voucher.address
        devnet.down(relative)
        assert (tmp_path / ".data" / "anvil-state.json").is_file()
        info = devnet.up(relative, port=0, block_time=None)
        assert ensure_deployed(relative, info.rpc_url).voucher.address == address
    finally:
        devnet.down(relative)
