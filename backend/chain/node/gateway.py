"""The node's one public endpoint, behaving like a permissioned Besu node in front of the private anvil.

Reads are open to local readers; `eth_sendRawTransaction` needs the node token, a sender on the allowlist,
the ledger contract as recipient (a creation only by the admin), and stays under the gas and size caps;
`perm_*` manage the allowlist with the token. Development methods are answered only on a devnet started
unsafe for tests and demos. No CORS header is ever sent, so a web page cannot talk to the node.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from backend.chain.node import rawtx
from backend.chain.node.ipc import IpcPool, NodeDown
from backend.chain.node.permissions import Permissions, created_address, token_matches
from backend.chain.node.stategate import StateGate

READS = frozenset({
    "eth_chainId", "net_version", "net_listening", "web3_clientVersion", "eth_syncing", "eth_blockNumber",
    "eth_getBlockByNumber", "eth_getBlockByHash", "eth_getBlockReceipts", "eth_getLogs", "eth_call",
    "eth_estimateGas", "eth_getTransactionReceipt", "eth_getTransactionByHash", "eth_getTransactionCount",
    "eth_getBalance", "eth_getCode", "eth_getStorageAt", "eth_gasPrice", "eth_maxPriorityFeePerGas",
    "eth_feeHistory", "eth_getBlockTransactionCountByNumber", "eth_getBlockTransactionCountByHash",
    "eth_getTransactionByBlockNumberAndIndex", "eth_getTransactionByBlockHashAndIndex", "eth_accounts",
})  # fmt: skip
DEV_PREFIXES = ("anvil_", "evm_", "hardhat_", "debug_", "personal_", "ots_", "trace_", "txpool_")

# JSON-RPC error codes: Besu's where it has one (-32007 sender not authorized), our own otherwise.
UNAUTHORIZED, METHOD_NOT_AVAILABLE, INVALID_REQUEST, NODE_DOWN = -32040, -32601, -32600, -32603
SENDER_NOT_ALLOWED, TX_REFUSED, TOO_LARGE = -32007, -32008, -32009


class Unavailable(Exception):
    """The private node is down or restarting: the whole request is answered 503, so clients retry."""


@dataclass
class Limits:
    max_request_bytes: int = 1 << 20
    max_batch: int = 1000
    max_tx_bytes: int = 64 * 1024
    max_tx_gas: int = 10_000_000


@dataclass
class Gateway:
    pool: IpcPool
    permissions: Permissions
    token: str
    chain_id: int
    unsafe: bool = False  # development methods (time travel, snapshots): only on test and demo devnets
    automine: bool = False  # a transaction is mined as it is sent: sending changes the state
    limits: Limits = field(default_factory=Limits)
    gate: StateGate = field(default_factory=StateGate)
    on_write: Callable[[], None] = lambda: None  # a transaction or a development method changed the node
    ready: Callable[[], bool] = lambda: True

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":  # served with lifespan off: nothing to start or stop
            return
        if scope["method"] != "POST":
            answer = _error(None, INVALID_REQUEST, "only POST of JSON-RPC is served")
            await _respond(send, 405, answer, [(b"allow", b"POST")])
            return
        headers = dict(scope["headers"])
        body, too_large = await _read_body(receive, self.limits.max_request_bytes)
        if too_large:
            await _respond(send, 413, _error(None, TOO_LARGE, f"request over {self.limits.max_request_bytes} bytes"))
            return
        authorized = token_matches(self.token, (headers.get(b"authorization") or b"").decode("latin-1"))
        status, answer = await self.handle(body, authorized)
        await _respond(send, status, answer)

    async def handle(self, body: bytes, authorized: bool) -> tuple[int, Any]:
        try:
            request = json.loads(body)
        except ValueError:
            return 400, _error(None, -32700, "the request is not valid JSON")
        if not self.ready():
            return 503, _error(_id(request), NODE_DOWN, "the node is restarting; try again shortly")
        if isinstance(request, list):
            if not request or len(request) > self.limits.max_batch:
                return 400, _error(None, INVALID_REQUEST, f"a batch holds 1 to {self.limits.max_batch} calls")
            calls = request
        else:
            calls = [request]
        try:
            answers = await self._batch(calls, authorized, body)
        except Unavailable as exc:
            return 503, _error(_id(request), NODE_DOWN, str(exc))
        if isinstance(answers, bytes):
            return 200, answers
        return 200, answers if isinstance(request, list) else answers[0]

    async def _batch(self, calls: list[Any], authorized: bool, body: bytes) -> list[Any] | bytes:
        """The answers, in order; or the node's own answer bytes when every call went to it unchanged."""
        answers: list[Any] = [None] * len(calls)
        forward: list[tuple[int, dict[str, Any], rawtx.RawTx | None]] = []
        local: list[tuple[int, dict[str, Any]]] = []
        for i, call in enumerate(calls):
            verdict = self._admit(call, authorized)
            if isinstance(verdict, dict):
                answers[i] = verdict
            elif verdict == "perm":
                local.append((i, call))
            else:
                assert verdict is None or isinstance(verdict, rawtx.RawTx)
                forward.append((i, call, verdict))
        if forward:
            # What changes the node's state waits while a dump runs; a transaction only joins the pool, unless
            # the node mines it on arrival.
            writes = any((tx is not None and self.automine) or _is_dev(c["method"]) for _, c, tx in forward)
            sent = any(tx is not None for _, _, tx in forward)
            # The common case, every call admitted and nothing to learn from the answers, passes the bytes through
            # both ways: re-encoding a batch of signed transactions cost as much as checking them.
            through = len(forward) == len(calls) and all(tx is None or tx.to is not None for _, _, tx in forward)
            if through:
                request = body
            else:
                payload = [{"jsonrpc": "2.0", "id": n, "method": c["method"], "params": c.get("params", [])}
                           for n, (_, c, _) in enumerate(forward)]  # fmt: skip
                request = json.dumps(payload).encode()
            try:
                if writes:
                    async with self.gate.shared():
                        raw = await self.pool.raw(request)
                else:
                    raw = await self.pool.raw(request)
                if writes or sent:
                    self.on_write()
                if through:
                    return raw
                results = {a["id"]: a for a in json.loads(raw)}
            except (NodeDown, ValueError, TypeError) as exc:
                raise Unavailable(f"the node did not answer ({exc}); try again shortly") from None
            for n, (i, call, tx) in enumerate(forward):
                answer = results.get(n) or _error(None, NODE_DOWN, "the node gave no answer")
                answer["id"] = call.get("id")
                answers[i] = answer
                if tx is not None and tx.to is None and "result" in answer:
                    self.permissions.add_contract(created_address(tx.sender, tx.nonce))
        for i, call in local:
            answers[i] = self._perm(call)
        return answers

    def _admit(self, call: Any, authorized: bool) -> dict[str, Any] | str | rawtx.RawTx | None:
        """An error answer, "perm" for the allowlist methods, the decoded transaction, or None to forward."""
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return _error(None, INVALID_REQUEST, "each call is an object with a method")
        method, ident = call["method"], call.get("id")
        if method in READS:
            return None
        if method.startswith("perm_"):
            return "perm" if authorized else _unauthorized(ident, method)
        if method == "eth_sendRawTransaction":
            return self._check_tx(ident, call.get("params"), authorized)
        if _is_dev(method) and self.unsafe:
            return None if authorized else _unauthorized(ident, method)
        return _error(
            ident,
            METHOD_NOT_AVAILABLE,
            f"method {method} is not available on this node: it serves "
            "standard reads, and transactions only as eth_sendRawTransaction from allowlisted accounts",
        )

    def _check_tx(self, ident: Any, params: Any, authorized: bool) -> dict[str, Any] | rawtx.RawTx:
        if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], str):
            return _error(ident, -32602, "eth_sendRawTransaction takes one 0x-hex signed transaction")
        hex_tx = params[0].removeprefix("0x")
        if len(hex_tx) > 2 * self.limits.max_tx_bytes:
            return _error(ident, TOO_LARGE, f"transaction over the size cap of {self.limits.max_tx_bytes} bytes")
        try:
            tx = rawtx.decode(bytes.fromhex(hex_tx))
        except ValueError as exc:
            return _error(ident, TX_REFUSED, f"not an acceptable signed transaction: {exc}")
        rules = self.permissions
        if tx.sender not in rules.accounts:  # first: a stranger is told the rule that stops it, token or not
            return _error(ident, SENDER_NOT_ALLOWED, f"sender account {tx.sender} is not on the node's account "
                          "allowlist (perm_addAccountsToAllowlist)")  # fmt: skip
        if not authorized:
            return _unauthorized(ident, "eth_sendRawTransaction")
        if tx.chain_id != self.chain_id:
            return _error(ident, TX_REFUSED, f"transaction for chain {tx.chain_id}; this node is chain {self.chain_id}")
        if tx.gas > self.limits.max_tx_gas:
            return _error(ident, TX_REFUSED, f"gas {tx.gas} over the per-transaction cap of {self.limits.max_tx_gas}")
        if tx.to is None:
            if tx.sender != rules.admin and not self.unsafe:
                return _error(ident, TX_REFUSED, "contract creation is permitted only to the node's admin account")
        elif tx.to not in rules.contracts:
            return _error(ident, TX_REFUSED, f"transactions may only call the ledger contract; {tx.to} is not it")
        return tx

    def _perm(self, call: dict[str, Any]) -> dict[str, Any]:
        method, ident, params = call["method"], call.get("id"), call.get("params") or []
        if method == "perm_getAccountsAllowlist":
            return _result(ident, sorted(self.permissions.accounts))
        if method not in ("perm_addAccountsToAllowlist", "perm_removeAccountsFromAllowlist"):
            return _error(ident, METHOD_NOT_AVAILABLE, f"method {method} is not available on this node")
        accounts = params[0] if params and isinstance(params[0], list) else None
        if not accounts or not all(isinstance(a, str) and _is_address(a) for a in accounts):
            return _error(ident, -32602, f"{method} takes one list of 0x-addresses")
        if method == "perm_addAccountsToAllowlist":
            self.permissions.add_accounts(accounts)
            return _result(ident, "Success")
        missing = self.permissions.remove_accounts(accounts)
        if missing:
            return _error(ident, -32602, f"not on the allowlist: {', '.join(missing)}")
        return _result(ident, "Success")


def _is_dev(method: str) -> bool:
    return method.startswith(DEV_PREFIXES) or method in ("eth_sendTransaction", "eth_sign", "eth_signTransaction",
                                                         "eth_signTypedData_v4")  # fmt: skip


def _is_address(value: str) -> bool:
    return len(value) == 42 and value.startswith("0x") and all(c in "0123456789abcdefABCDEF" for c in value[2:])


def _id(request: Any) -> Any:
    return request.get("id") if isinstance(request, dict) else None


def _result(ident: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "result": result}


def _error(ident: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "error": {"code": code, "message": message}}


def _unauthorized(ident: Any, method: str) -> dict[str, Any]:
    return _error(ident, UNAUTHORIZED, f"{method} needs the node token (Authorization: Bearer <D/node-token>)")


async def _read_body(receive: Callable[[], Awaitable[Any]], limit: int) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks), False


async def _respond(send: Any, status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": data})
