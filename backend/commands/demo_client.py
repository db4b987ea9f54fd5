"""The HTTP side of `voucher demo`: a small client of the running service that checks every status it
expects, and the one devnet-only step (moving the chain clock) that goes to the node rather than the API."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from backend.chain.deploy import CONTRACT, DEPLOYMENT_FILE
from backend.chain.node.permissions import read_token


class DemoError(Exception):
    """A step did not go as expected; the message says which step and what the service answered."""


def _describe(r: httpx.Response) -> str:
    try:
        err = r.json()["error"]
        return f"{err['code']}: {err['message']}"
    except (ValueError, KeyError, TypeError):
        return r.text[:200] or r.reason_phrase


class Client:
    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def call(
        self, method: str, path: str, key: str | None, body: Any = None, *, what: str, expect: tuple[int, ...] = (200,)
    ) -> Any:
        """One request; anything but an expected status stops the demo. Ledger-changing POSTs carry an
        Idempotency-Key, so a request whose answer was lost can be sent again safely (once)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        replayable = method == "GET" or (method == "POST" and not path.startswith("/v1/api-keys"))
        if method == "POST" and replayable:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        for attempt in (1, 2):
            try:
                r = self.http.request(method, path, json=body, headers=headers)
                break
            except httpx.ConnectError:
                raise DemoError(f"the service at {self.url} is not reachable; start it with `voucher serve`") from None
            except httpx.TransportError as exc:
                if attempt == 2 or not replayable:
                    raise DemoError(f"{what}: no answer from {self.url} ({type(exc).__name__})") from None
        if r.status_code not in expect:
            wanted = " or ".join(map(str, expect))
            raise DemoError(f"{what}: expected HTTP {wanted}, got {r.status_code} ({_describe(r)})")
        try:
            return r.json()
        except ValueError:
            raise DemoError(f"{what}: the answer is not JSON: {r.text[:200]!r}") from None

    def get(self, path: str, key: str, *, what: str) -> Any:
        return self.call("GET", path, key, what=what)

    def post(self, path: str, key: str, body: Any = None, *, what: str, expect: tuple[int, ...] = (200,)) -> Any:
        return self.call("POST", path, key, body, what=what, expect=expect)

    def refused(self, path: str, key: str, body: Any, *, what: str, status: int = 409) -> dict[str, Any]:
        """A request the demo expects the service to refuse; returns its error (code, message)."""
        err: dict[str, Any] = self.post(path, key, body, what=what, expect=(status,))["error"]
        return err

    def settle(self, path: str, key: str, *, busy: str, what: str, timeout_s: float = 120.0) -> dict[str, Any]:
        """Polls a record answered with 202 (its transaction still on the way) until it leaves `busy`."""
        deadline = time.monotonic() + timeout_s
        while True:
            row: dict[str, Any] = self.get(path, key, what=what)
            if row["status"] != busy:
                return row
            if time.monotonic() > deadline:
                raise DemoError(f"{what}: still {busy} after {timeout_s:.0f}s")
            time.sleep(0.5)


def devnet_time_travel(data_dir: Path, contract: str, seconds: int) -> str | None:
    """DEVNET ONLY: moves the chain clock `seconds` forward (evm_increaseTime, then evm_mine a block).

    The node is the one in D/deployment.json, used only if it holds the service's contract. Returns None when
    done, or why not (no record, another chain, or a node that refuses: not a devnet)."""
    path = data_dir / DEPLOYMENT_FILE
    try:
        record = json.loads(path.read_text())
        rpc_url, recorded = str(record["rpc_url"]), str(record["contracts"][CONTRACT]["address"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable deployment record at {path}"
    if recorded.lower() != contract.lower():
        return f"{path} names contract {recorded}, but the service uses {contract}"
    token = read_token(data_dir)  # the node obeys time travel only from its operator, on a devnet made for it
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=30, headers=headers) as http:
        for n, (method, params) in enumerate((("evm_increaseTime", [seconds]), ("evm_mine", [])), 1):
            try:
                answer = http.post(rpc_url, json={"jsonrpc": "2.0", "id": n, "method": method, "params": params})
                body = answer.json()
            except (httpx.HTTPError, ValueError) as exc:
                return f"the node at {rpc_url} did not answer {method} ({type(exc).__name__})"
            if not isinstance(body, dict) or "error" in body or "result" not in body:
                error = body.get("error") if isinstance(body, dict) else body
                message = error.get("message") if isinstance(error, dict) else error
                return f"the node at {rpc_url} refused {method} ({message}): not a devnet"
    return None
