"""A small, thread-safe JSON-RPC client for the node, with errors the rest of the service understands.

web3.py's provider retries `eth_sendRawTransaction` behind our back and hides the revert data shape;
talking JSON-RPC directly keeps both under our control. A node that does not answer becomes
`NodeUnavailable` quickly instead of hanging a request.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
from typing import Any
from urllib.parse import urlsplit

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
    """One keep-alive HTTP connection per thread (http.client), so threads never queue on a shared pool.

    httpx's shared connection pool serialised every call behind one lock: under 200 concurrent requests the
    service spent its time waiting there, not talking to the node.
    """

    def __init__(self, url: str, *, timeout: float = 10.0, token: str | None = None) -> None:
        self.url = url
        # A permissioned node (our devnet's gateway, Besu with RPC authentication) wants a bearer token on writes.
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
        self._path = parts.path or "/"
        self._https = parts.scheme == "https"
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _post(self, payload: Any) -> Any:
        body = json.dumps(payload).encode()
        headers = self._headers
        for attempt in (1, 2):  # a kept-alive connection the node has closed fails once; reconnect and retry
            conn = self._connection()
            try:
                conn.request("POST", self._path, body, headers)
                response = conn.getresponse()
                data = response.read()
                if response.status >= 500:  # a gateway whose node is restarting
                    status = response.status
                    raise NodeUnavailable(f"the chain node at {self.url} is not ready (HTTP {status}); try again")
                return json.loads(data)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                conn.close()
                self._local.conn = None
                with self._lock:
                    if conn in self._all:
                        self._all.remove(conn)
                if attempt == 2 or isinstance(exc, ValueError | TimeoutError):
                    raise NodeUnavailable(
                        f"the chain node at {self.url} did not answer ({type(exc).__name__}); try again shortly"
                    ) from None
        raise AssertionError("unreachable")

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        body = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []})
        if "error" in body:
            err = body["error"]
            raise RpcError(method, int(err.get("code", 0)), str(err.get("message", "")), err.get("data"))
        return body.get("result")

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one request (keep batches small: large ones have hung anvil). Errors raise."""
        if not calls:
            return []
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        results: list[Any] = [None] * len(calls)
        for item in self._post(payload):
            if "error" in item:
                err = item["error"]
                method = calls[item["id"]][0]
                raise RpcError(method, int(err.get("code", 0)), str(err.get("message", "")), err.get("data"))
            results[item["id"]] = item["result"]
        return results

    def batch_each(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one request; each answer is its result or its RpcError (nothing raised for one)."""
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        results: list[Any] = [None] * len(calls)
        for item in self._post(payload):
            i = item["id"]
            if "error" in item:
                err = item["error"]
                results[i] = RpcError(
                    calls[i][0], int(err.get("code", 0)), str(err.get("message", "")), err.get("data")
                )
            else:
                results[i] = item["result"]
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
