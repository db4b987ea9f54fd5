"""A small, thread-safe JSON-RPC client for the node, with errors the rest of the service understands.

web3.py's provider retries `eth_sendRawTransaction` behind our back and hides the revert data shape;
talking JSON-RPC directly keeps both under our control. A node that does not answer becomes
`NodeUnavailable` quickly instead of hanging a request.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import httpx

from backend.errors import NodeUnavailable


class RpcError(Exception):
    """The node answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str, data: Any) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message
        self.data = data

    @property
    def revert_data(self) -> str | None:
        """The ABI-encoded revert reason, if the node attached one."""
        data = self.data
        if isinstance(data, dict):
            data = data.get("data")
        return data if isinstance(data, str) and data.startswith("0x") else None


class Rpc:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=2.0), limits=limits)

    def close(self) -> None:
        self._client.close()

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        payload = {"jsonrpc": "2.0", "id": self._next_id(), "method": method, "params": params or []}
        try:
            response = self._client.post(self.url, json=payload)
            body = response.json()
        except (httpx.TransportError, ValueError) as exc:
            raise NodeUnavailable(
                f"the chain node at {self.url} did not answer ({type(exc).__name__}); try again shortly",
                method=method,
            ) from None
        if "error" in body:
            err = body["error"]
            raise RpcError(method, int(err.get("code", 0)), str(err.get("message", "")), err.get("data"))
        return body.get("result")

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one request (keep batches small: large ones have hung anvil). Errors raise."""
        if not calls:
            return []
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        try:
            body = self._client.post(self.url, json=payload).json()
        except (httpx.TransportError, ValueError) as exc:
            raise NodeUnavailable(f"the chain node at {self.url} did not answer ({type(exc).__name__})") from None
        results: list[Any] = [None] * len(calls)
        for item in body:
            if "error" in item:
                err = item["error"]
                method = calls[item["id"]][0]
                raise RpcError(method, int(err.get("code", 0)), str(err.get("message", "")), err.get("data"))
            results[item["id"]] = item["result"]
        return results

    # -- typed shortcuts ----------------------------------------------------------------------
    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def pending_nonce(self, address: str) -> int:
        return int(self.call("eth_getTransactionCount", [address, "pending"]), 16)

    def latest_nonce(self, address: str) -> int:
        return int(self.call("eth_getTransactionCount", [address, "latest"]), 16)

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        result = self.call("eth_getTransactionReceipt", [tx_hash])
        return result if isinstance(result, dict) else None

    def block_receipts(self, number: int) -> list[dict[str, Any]]:
        result = self.call("eth_getBlockReceipts", [hex(number)])
        return list(result or [])

    def eth_call(self, to: str, data: str, *, sender: str | None = None, block: str | int = "latest") -> str:
        tx: dict[str, Any] = {"to": to, "data": data}
        if sender:
            tx["from"] = sender
        return str(self.call("eth_call", [tx, hex(block) if isinstance(block, int) else block]))

    def estimate_gas(self, sender: str, to: str, data: str) -> int:
        return int(self.call("eth_estimateGas", [{"from": sender, "to": to, "data": data}]), 16)

    def code(self, address: str) -> str:
        return str(self.call("eth_getCode", [address, "latest"]))
