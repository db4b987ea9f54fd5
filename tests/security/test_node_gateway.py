"""The devnet's one endpoint behaves like a permissioned Besu node: reads for everyone, transactions only with
the node token from allowlisted accounts to the ledger, development methods nowhere (unless a test devnet is
started unsafe), the allowlist managed with Besu's perm_* methods, size limits, and no CORS."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from backend.chain import devnet
from backend.chain.deploy import Deployment, admin_account, ensure_deployed
from backend.chain.node.gateway import Limits

DEV_METHODS = [
    ("anvil_impersonateAccount", ["0x" + "11" * 20]),
    ("anvil_setStorageAt", ["0x" + "11" * 20, "0x0", "0x" + "00" * 32]),
    ("anvil_setCode", ["0x" + "11" * 20, "0x00"]),
    ("anvil_reset", []),
    ("anvil_setChainId", [1]),
    ("anvil_setAutomine", [False]),
    ("anvil_setNextBlockBaseFeePerGas", ["0x3b9aca00"]),
    ("anvil_dumpState", []),
    ("evm_increaseTime", [3600]),
    ("evm_setNextBlockTimestamp", [2_000_000_000]),
    ("evm_mine", []),
    ("evm_snapshot", []),
    ("hardhat_setBalance", ["0x" + "11" * 20, "0x1"]),
    ("debug_traceTransaction", ["0x" + "00" * 32]),
    ("personal_sign", ["0x00", "0x" + "11" * 20]),
    ("eth_sendTransaction", [{"from": "0x" + "11" * 20, "to": "0x" + "22" * 20}]),
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Deployment]]:
    """A devnet as `make run` starts it: no development methods."""
    data_dir = tmp_path_factory.mktemp("node")
    info = devnet.up(data_dir, port=0, block_time=None)
    try:
        yield data_dir, ensure_deployed(data_dir, info.rpc_url)
    finally:
        devnet.down(data_dir)


def _rpc(url: str, method: str, params: list[Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    answer: dict[str, Any] = httpx.post(url, json=body, headers=headers, timeout=30).json()
    return answer


def _raw(account: LocalAccount, dep: Deployment, *, to: str | None = "ledger", data: str = "0x5c975abb",
         gas: int = 100_000, chain_id: int | None = None, nonce: int = 0) -> str:  # fmt: skip
    tx: dict[str, Any] = {"data": data, "gas": gas, "gasPrice": 0, "nonce": nonce,
                          "chainId": chain_id or dep.chain_id}  # fmt: skip
    if to is not None:
        tx["to"] = dep.voucher.address if to == "ledger" else to
    return "0x" + bytes(account.sign_transaction(tx).raw_transaction).hex()


@pytest.mark.parametrize(("method", "params"), DEV_METHODS, ids=[m for m, _ in DEV_METHODS])
def test_every_development_method_is_refused_even_with_the_node_token(
    node: tuple[Path, Deployment], method: str, params: list[Any]
) -> None:
    data_dir, dep = node
    for token in (None, devnet.token(data_dir)):
        answer = _rpc(dep.rpc_url, method, params, token)
        assert answer["error"]["code"] == -32601 and f"method {method} is not available" in answer["error"]["message"]


def test_reads_are_open_to_any_local_reader(node: tuple[Path, Deployment]) -> None:
    _, dep = node
    assert int(_rpc(dep.rpc_url, "eth_chainId", [])["result"], 16) == dep.chain_id
    assert _rpc(dep.rpc_url, "eth_getCode", [dep.voucher.address, "latest"])["result"] not in ("0x", None)
    assert isinstance(
        _rpc(dep.rpc_url, "eth_getLogs", [{"fromBlock": "0x0", "address": dep.voucher.address}])["result"], list
    )


def test_the_private_node_is_not_reachable_over_tcp(node: tuple[Path, Deployment]) -> None:
    data_dir, dep = node
    anvil = int((data_dir / "node" / "anvil.pid").read_text())
    assert os.readlink(f"/proc/{anvil}/ns/net") != os.readlink("/proc/self/ns/net")
    # Inside its namespace anvil listens on 8545; out here that port is not anvil's (nothing, or someone else).
    with socket.socket() as s:
        s.settimeout(1)
        reached = s.connect_ex(("127.0.0.1", 8545)) == 0
    if reached:  # another program holds 8545 here: it must not be our node
        assert devnet.rpc_chain_id("http://127.0.0.1:8545", timeout=1) != dep.chain_id
    socket_dir = (data_dir / "node").stat()
    assert socket_dir.st_mode & 0o077 == 0  # the IPC socket's folder is the owner's alone


def test_a_raw_transaction_from_a_fresh_key_is_refused_naming_the_allowlist(node: tuple[Path, Deployment]) -> None:
    data_dir, dep = node
    stranger = Account.create()
    for token in (devnet.token(data_dir), None):
        answer = _rpc(dep.rpc_url, "eth_sendRawTransaction", [_raw(stranger, dep)], token)
        assert answer["error"]["code"] == -32007
    assert (
        f"sender account {stranger.address.lower()} is not on the node's account allowlist"
        in answer["error"]["message"]
    )


def test_a_write_without_the_node_token_is_refused(node: tuple[Path, Deployment]) -> None:
    data_dir, dep = node
    admin = admin_account(data_dir)
    nonce = int(_rpc(dep.rpc_url, "eth_getTransactionCount", [admin.address, "pending"])["result"], 16)
    for token in (None, "not-the-token"):
        answer = _rpc(dep.rpc_url, "eth_sendRawTransaction", [_raw(admin, dep, nonce=nonce)], token)
        assert answer["error"]["code"] == -32040 and "needs the node token" in answer["error"]["message"]


def test_allowlisted_senders_may_call_the_ledger_and_nothing_else(node: tuple[Path, Deployment]) -> None:
    data_dir, dep = node
    token, account = devnet.token(data_dir), Account.create()
    assert _rpc(dep.rpc_url, "perm_addAccountsToAllowlist", [[account.address]], token)["result"] == "Success"
    refusals = {
        "transactions may only call the ledger contract": _raw(account, dep, to="0x" + "22" * 20),
        "contract creation is permitted only to the node's admin account": _raw(account, dep, to=None, data="0x00"),
        "over the per-transaction cap": _raw(account, dep, gas=Limits().max_tx_gas + 1),
        f"this node is chain {dep.chain_id}": _raw(account, dep, chain_id=dep.chain_id + 1),
    }
    for reason, raw in refusals.items():
        answer = _rpc(dep.rpc_url, "eth_sendRawTransaction", [raw], token)
        assert answer["error"]["code"] == -32008 and reason in answer["error"]["message"], answer
    accepted = _rpc(dep.rpc_url, "eth_sendRawTransaction", [_raw(account, dep)], token)
    receipt = _rpc(dep.rpc_url, "eth_getTransactionReceipt", [accepted["result"]])["result"]
    assert receipt["status"] == "0x1" and receipt["to"] == dep.voucher.address.lower()


def test_allowlist_is_managed_with_perm_methods_only_with_the_token_and_survives_a_restart(
    node: tuple[Path, Deployment],
) -> None:
    data_dir, dep = node
    token, account = devnet.token(data_dir), Account.create().address.lower()
    for method in ("perm_addAccountsToAllowlist", "perm_removeAccountsFromAllowlist", "perm_getAccountsAllowlist"):
        params = [] if method.endswith("Allowlist") and method.startswith("perm_get") else [[account]]
        assert _rpc(dep.rpc_url, method, params)["error"]["code"] == -32040
    assert _rpc(dep.rpc_url, "perm_addAccountsToAllowlist", [[account]], token)["result"] == "Success"
    listed = _rpc(dep.rpc_url, "perm_getAccountsAllowlist", [], token)["result"]
    assert account in listed and admin_account(data_dir).address.lower() in listed
    stored = json.loads((data_dir / "node" / "permissions.json").read_text())
    assert account in stored["accounts"] and (data_dir / "node" / "permissions.json").stat().st_mode & 0o077 == 0

    devnet.down(data_dir)
    info = devnet.up(data_dir, port=0, block_time=None)
    url = info.rpc_url
    assert account in _rpc(url, "perm_getAccountsAllowlist", [], token)["result"]
    assert _rpc(url, "perm_removeAccountsFromAllowlist", [[account]], token)["result"] == "Success"
    assert account not in _rpc(url, "perm_getAccountsAllowlist", [], token)["result"]
    gone = _rpc(url, "perm_removeAccountsFromAllowlist", [[account]], token)
    assert "not on the allowlist" in gone["error"]["message"]
    assert _rpc(url, "perm_addAccountsToAllowlist", [["not-an-address"]], token)["error"]["code"] == -32602
    ensure_deployed(data_dir, url)  # the record follows the node to its new port for the next tests


def test_oversized_requests_batches_and_transactions_are_refused(node: tuple[Path, Deployment]) -> None:
    data_dir, _ = node
    url = Deployment.load(data_dir / "deployment.json").rpc_url
    limits = Limits()
    big = httpx.post(url, content=b" " * (limits.max_request_bytes + 1), timeout=30)
    assert big.status_code == 413 and big.json()["error"]["code"] == -32009
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []} for i in range(limits.max_batch + 1)]
    answer = httpx.post(url, json=batch, timeout=30)
    assert answer.status_code == 400 and f"1 to {limits.max_batch} calls" in answer.json()["error"]["message"]
    huge_tx = "0x" + "00" * (limits.max_tx_bytes + 1)
    refused = _rpc(url, "eth_sendRawTransaction", [huge_tx], devnet.token(data_dir))
    assert refused["error"]["code"] == -32009 and "size cap" in refused["error"]["message"]


def test_no_cors_header_is_ever_sent(node: tuple[Path, Deployment]) -> None:
    data_dir, _ = node
    url = Deployment.load(data_dir / "deployment.json").rpc_url
    origin = {"Origin": "http://evil.example"}
    post = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, headers=origin)
    preflight = httpx.options(url, headers={**origin, "Access-Control-Request-Method": "POST"})
    assert post.status_code == 200 and preflight.status_code == 405
    for response in (post, preflight):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_an_unsafe_test_devnet_answers_development_methods_only_with_the_token(tmp_path: Path) -> None:
    info = devnet.up(tmp_path, port=0, block_time=None, unsafe=True)
    try:
        assert _rpc(info.rpc_url, "evm_snapshot", [])["error"]["code"] == -32040
        assert _rpc(info.rpc_url, "evm_snapshot", [], devnet.token(tmp_path))["result"].startswith("0x")
    finally:
        devnet.down(tmp_path)
