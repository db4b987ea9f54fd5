"""The real anvil devnet: start, stop, restart, crash, in tmp data dirs on free ports; every node is stopped."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from eth_typing import HexStr
from hexbytes import HexBytes
from web3 import Web3

from backend.chain import devnet
from backend.chain.deploy import DEPLOYMENT_FILE, Deployment, DeploymentError, admin_account, ensure_deployed
from backend.chain.node import statefile
from backend.chain.node.supervisor import anvil_binary
from tests.polling import eventually
from tests.support import ENTERPRISE, ISSUER_ROLE, PROVIDER, ledger_of, node_web3, raw_transaction


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    try:
        yield path
    finally:
        devnet.down(path)  # whatever the test left running


def _w3(info: devnet.DevnetInfo) -> Web3:
    return Web3(Web3.HTTPProvider(info.rpc_url))  # a reader: no token


def _chain_record(w3: Web3, contract: str, holders: Sequence[str], programme_id: int) -> dict[str, Any]:
    """Everything a restart must keep: every block, every receipt, every log, balances, the code."""
    address, accounts = Web3.to_checksum_address(contract), [Web3.to_checksum_address(h) for h in holders]
    blocks = [w3.eth.get_block(n) for n in range(w3.eth.block_number + 1)]
    tx_hashes = [cast(HexBytes, tx) for block in blocks for tx in block["transactions"]]  # hashes, not full ones
    abi = [{"name": "balanceOf", "type": "function", "stateMutability": "view",
            "inputs": [{"name": "a", "type": "address"}, {"name": "id", "type": "uint256"}],
            "outputs": [{"name": "", "type": "uint256"}]}]  # fmt: skip
    token = w3.eth.contract(address=address, abi=abi)
    return {
        "blocks": [(b["number"], b["hash"], b["stateRoot"]) for b in blocks],
        "receipts": [dict(w3.eth.get_transaction_receipt(h)) for h in tx_hashes],
        "logs": [dict(log) for log in w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"})],
        "vouchers": [token.functions.balanceOf(h, programme_id).call() for h in accounts],
        "ether": [w3.eth.get_balance(h) for h in accounts],
        "code": w3.eth.get_code(address),
    }


def test_up_down_up_keeps_every_block_receipt_log_and_balance(data_dir: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=None, unsafe=True)
    deployment = ensure_deployed(data_dir, info.rpc_url)
    w3 = node_web3(info.rpc_url, data_dir)
    admin = admin_account(data_dir)
    ledger = ledger_of(data_dir, deployment)
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
    with _taken(info.port):  # the old port is someone else's now: the node comes back on another
        info = devnet.up(data_dir, port=0, block_time=None)
    w3 = node_web3(info.rpc_url, data_dir)
    assert _chain_record(w3, deployment.voucher.address, holders, programme) == before
    assert w3.eth.get_balance(provider.address) == 10**18
    # The recorded contract is found again: no transaction sent, the record follows the node to its new port.
    assert ensure_deployed(data_dir, info.rpc_url).voucher == deployment.voucher
    recorded = Deployment.load(data_dir / DEPLOYMENT_FILE)
    assert recorded.rpc_url == info.rpc_url != deployment.rpc_url and recorded.voucher == deployment.voucher
    assert w3.eth.get_transaction_count(admin.address) == nonce
    assert w3.eth.block_number == before["blocks"][-1][0]


@contextmanager
def _taken(port: int = 0) -> Iterator[int]:
    """Another program listening on `port` (0: any free one) on the devnet's host while the block runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port a node just left may be in TIME_WAIT
        taken.bind((devnet.HOST, port))
        taken.listen()
        yield taken.getsockname()[1]


def _running(pid: int) -> bool:
    """Whether process `pid` is alive (a zombie, dead but not yet reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _code(w3: Web3, address: str) -> bytes:
    return bytes(w3.eth.get_code(Web3.to_checksum_address(address)))


def _anvil_pid(data_dir: Path) -> int:
    return int((data_dir / "node" / "anvil.pid").read_text())


def test_up_on_a_taken_port_names_it_and_port_0_picks_a_free_one(data_dir: Path) -> None:
    with _taken() as port:
        with pytest.raises(devnet.DevnetError) as exc:
            devnet.up(data_dir, port=port, block_time=None)
        assert f"port {port} " in str(exc.value) and "--port 0" in str(exc.value)
        assert list(data_dir.iterdir()) == []  # refused before anything was started or recorded
        info = devnet.up(data_dir, port=0, block_time=None)
    assert devnet.status(data_dir) == info  # the port it picked is recorded for `status` and `down`
    assert devnet.rpc_chain_id(info.rpc_url) == info.chain_id


def test_up_twice_is_the_same_node_and_down_is_idempotent(data_dir: Path) -> None:
    first = devnet.up(data_dir, port=0, block_time=None)
    second = devnet.up(data_dir, port=0, block_time=None)
    assert second == first and devnet.status(data_dir) == first
    anvil = _anvil_pid(data_dir)
    assert _running(first.pid) and _running(anvil)
    assert devnet.down(data_dir) is True
    assert not _running(first.pid) and not _running(anvil)  # the supervisor and its private anvil both stopped
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


def test_each_devnet_has_its_own_chain_id_kept_across_restarts(data_dir: Path, tmp_path: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=None)
    other = devnet.up(tmp_path / "other", port=0, block_time=None)
    try:
        assert info.chain_id != other.chain_id and info.chain_id not in (31337, 727001)
        assert _w3(info).eth.chain_id == info.chain_id
        devnet.down(data_dir)
        assert devnet.up(data_dir, port=0, block_time=None).chain_id == info.chain_id
    finally:
        devnet.down(tmp_path / "other")


def test_the_node_is_free_gas_with_nothing_prefunded_and_listens_only_on_loopback(data_dir: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=None)
    deployment = ensure_deployed(data_dir, info.rpc_url)
    w3 = node_web3(info.rpc_url, data_dir)
    assert list(w3.eth.accounts) == []  # nothing prefunded, nothing unlocked
    # Free gas: an allowlisted account that never held ether gets its transaction mined, and pays nothing.
    ledger = ledger_of(data_dir, deployment)
    ledger.send(ledger.contract.functions.grantRole(ISSUER_ROLE, ledger.issuer.address), ledger.admin)
    programme, enterprise = ledger.create_programme([]), ledger.new_participant(ENTERPRISE).address
    assert w3.eth.get_balance(ledger.issuer.address) == 0 == w3.eth.get_transaction_count(ledger.issuer.address)
    receipt = ledger.issue(programme, enterprise, 1)  # Ledger.send checks it succeeded
    assert receipt["gasUsed"] > 0 and receipt["effectiveGasPrice"] == 0
    assert w3.eth.get_balance(ledger.issuer.address) == 0 == w3.eth.get_balance(ledger.admin.address)
    assert ledger.balance(enterprise, programme) == 1
    # 127.0.0.1 only: every listening socket of the gateway is on loopback (0100007F, little-endian hex) ...
    assert _listen_addresses(info.pid) == [f"0100007F:{info.port:04X}"]
    # ... and anvil itself lives in a network namespace of its own, where its HTTP port serves nobody else.
    anvil = int((data_dir / "node" / "anvil.pid").read_text())
    assert os.readlink(f"/proc/{anvil}/ns/net") != os.readlink("/proc/self/ns/net")
    assert _listen_addresses(anvil) == []  # nothing of anvil's listens in our namespace


def test_blocks_are_made_only_while_transactions_wait_and_an_idle_dump_does_not_grow(data_dir: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=0.25)
    deployment = ensure_deployed(data_dir, info.rpc_url)
    w3 = node_web3(info.rpc_url, data_dir)
    dump = data_dir / "node" / "state.json.gz"
    eventually(lambda: dump.is_file() and _dump_head(data_dir) == w3.eth.block_number, timeout=15, interval=0.05)
    start, size = w3.eth.block_number, dump.stat().st_size
    time.sleep(3)  # idle: no block, and the dump is neither grown nor rewritten
    assert w3.eth.block_number == start and dump.stat().st_size == size
    # Work: transactions sent together wait at most a block time and share blocks.
    ledger = ledger_of(data_dir, deployment)
    enterprises = [ledger.new_participant(ENTERPRISE, register=False) for _ in range(10)]
    f, admin = ledger.contract.functions, ledger.admin
    nonce = w3.eth.get_transaction_count(admin.address)
    hashes = []
    for i, e in enumerate(enterprises):
        call = f.registerParticipant(e.address, ENTERPRISE, os.urandom(32))
        raw = raw_transaction(admin, call, gas=200_000, nonce=nonce + i, chainId=info.chain_id)
        hashes.append(w3.eth.send_raw_transaction(raw))
    blocks = {w3.eth.wait_for_transaction_receipt(h, timeout=10)["blockNumber"] for h in hashes}
    assert len(blocks) <= 3 and w3.eth.block_number - start <= 3
    assert w3.eth.get_block("latest")["transactions"]  # the newest block holds work, not emptiness


def test_the_node_is_the_platform_anvil_binary_not_the_npm_wrapper(data_dir: Path) -> None:
    devnet.up(data_dir, port=0, block_time=None)
    anvil = int((data_dir / "node" / "anvil.pid").read_text())
    exe = Path(f"/proc/{anvil}/exe").resolve()
    assert exe == anvil_binary().resolve()
    assert "node_modules/@foundry-rs/anvil-" in str(exe) and exe.name == "anvil"
    argv0 = Path(f"/proc/{anvil}/cmdline").read_bytes().split(b"\0")[0].decode()
    assert argv0 == str(anvil_binary()) and not argv0.endswith((".mjs", ".js"))


def test_kill_hard_then_up_keeps_what_was_dumped_and_lost_state_is_refused(data_dir: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=None)
    deployment = ensure_deployed(data_dir, info.rpc_url)
    address = deployment.voucher.address
    eventually(lambda: _dump_head(data_dir) >= deployment.voucher.deploy_block, timeout=15, interval=0.05)
    anvil = _anvil_pid(data_dir)
    devnet.kill_hard(data_dir)
    assert not _running(info.pid) and not _running(anvil)  # the whole devnet died, as in a crash
    assert devnet.rpc_chain_id(info.rpc_url, timeout=0.5) is None

    info = devnet.up(data_dir, port=0, block_time=None)
    w3 = _w3(info)
    assert _code(w3, address) and ensure_deployed(data_dir, info.rpc_url).voucher == deployment.voucher

    # Deterministic loss: every dump is gone while the node is down.
    devnet.down(data_dir)
    for name in ("state.json.gz", "state.prev.json.gz"):
        (data_dir / "node" / name).unlink(missing_ok=True)
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
    assert _code(w3, fresh.voucher.address)
    assert w3.eth.get_transaction_receipt(HexStr(fresh.voucher.deploy_tx))["contractAddress"] == fresh.voucher.address
    assert Deployment.load(path) == fresh
    assert path.read_text() != recorded
    assert w3.eth.get_transaction_count(admin_account(data_dir).address) == 1


def test_a_cut_dump_falls_back_to_the_previous_one_and_says_what_was_lost(data_dir: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=None)
    deployment = ensure_deployed(data_dir, info.rpc_url)
    eventually(lambda: _dump_head(data_dir) >= deployment.voucher.deploy_block, timeout=15, interval=0.05)
    devnet.dump_now(data_dir)  # the deployment is now in the current and the previous dump
    w3 = node_web3(info.rpc_url, data_dir)
    ledger = ledger_of(data_dir, deployment)
    ledger.new_participant(ENTERPRISE)
    devnet.dump_now(data_dir)
    head = w3.eth.block_number
    devnet.kill_hard(data_dir)
    current = data_dir / "node" / "state.json.gz"
    current.write_bytes(current.read_bytes()[:-100])  # what a crash during the write would leave

    info = devnet.up(data_dir, port=0, block_time=None)
    w3 = _w3(info)
    assert deployment.voucher.deploy_block <= w3.eth.block_number < head and _code(w3, deployment.voucher.address)
    log = (data_dir / "devnet.log").read_text()
    assert "state.json.gz passed over: state.json.gz is cut short" in log
    assert f"the blocks after {w3.eth.block_number} were lost" in log


def test_a_dump_newer_than_its_blocks_is_refused() -> None:
    state: dict[str, Any] = {"best_block_number": 1, "accounts": {"0x" + "ab" * 20: {"nonce": 2, "code": "0x"}},
             "blocks": [_block(0, []), _block(1, ["0x01"])],
             "transactions": [{"info": {"transaction_hash": "0x01", "from": "0x" + "ab" * 20}}]}  # fmt: skip
    with pytest.raises(statefile.DumpInvalid, match="spent 2 nonces but its blocks hold 1"):
        statefile.check(state)
    state["accounts"]["0x" + "ab" * 20]["nonce"] = 1
    # As anvil dumps a chain it loaded: blocks unordered, and a second genesis of its own beside the loaded one.
    state["blocks"] = [_block(1, ["0x01"]), _block(0, []), _block(0, [])]
    assert statefile.check(state) == 1
    state["blocks"].pop(0)
    with pytest.raises(statefile.DumpInvalid, match="gap"):
        statefile.check(state)


def _block(number: int, hashes: list[str]) -> dict[str, Any]:
    return {"header": {"number": hex(number)}, "transactions": [{"transaction": {"hash": h}} for h in hashes]}


def _dump_head(data_dir: Path) -> int:
    dump = data_dir / "node" / "state.json.gz"
    return statefile.check(statefile.read(dump)) if dump.is_file() else -1


def test_a_relative_data_dir_keeps_state_across_down_and_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `make run` passes `.data`: the state file must land there, not relative to anvil's own working folder.
    monkeypatch.chdir(tmp_path)
    relative = Path(".data")
    info = devnet.up(relative, port=0, block_time=None)
    try:
        address = ensure_deployed(relative, info.rpc_url).voucher.address
        devnet.down(relative)
        assert (tmp_path / ".data" / "node" / "state.json.gz").is_file()
        info = devnet.up(relative, port=0, block_time=None)
        assert ensure_deployed(relative, info.rpc_url).voucher.address == address
    finally:
        devnet.down(relative)
