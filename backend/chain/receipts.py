"""Waits for receipts without polling the node once per waiting request.

One thread per process follows new blocks and fetches each block's receipts in a single call; requests
waiting on a transaction hash are woken when it appears. A request that waited a while without news
also asks for its own receipt directly, so a block the follower missed costs latency, never a result.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from backend.chain.rpc import Rpc, RpcError
from backend.errors import NodeUnavailable

log = logging.getLogger(__name__)


class ReceiptWatcher:
    def __init__(self, rpc: Rpc, *, poll_s: float = 0.05, direct_check_s: float = 1.0) -> None:
        self._rpc = rpc
        self._poll_s = poll_s
        self._direct_check_s = direct_check_s
        self._waiting: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_block = -1
        self._head_time: tuple[int, float] | None = None  # (latest block timestamp, monotonic time seen)

    def start(self) -> None:
        try:
            self._last_block = self._rpc.block_number()
        except NodeUnavailable:
            self._last_block = -1
        self._thread = threading.Thread(target=self._run, name="receipt-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def expect(self, tx_hash: str) -> None:
        """Register interest before broadcasting, so a fast block cannot slip past."""
        with self._lock:
            self._waiting.setdefault(tx_hash.lower(), (threading.Event(), []))

    def forget(self, tx_hash: str) -> None:
        """Drops interest in a transaction that will never be sent (signed again in its place)."""
        with self._lock:
            self._waiting.pop(tx_hash.lower(), None)

    def wait(self, tx_hash: str, timeout: float) -> dict[str, Any] | None:
        key = tx_hash.lower()
        self.expect(key)
        event, box = self._waiting[key]
        remaining = timeout
        try:
            while remaining > 0:
                step = min(self._direct_check_s, remaining)
                if event.wait(step):
                    return box[0]
                remaining -= step
                try:
                    receipt = self._rpc.receipt(key)
                except (NodeUnavailable, RpcError):
                    receipt = None
                if receipt is not None:
                    return receipt
            return None
        finally:
            with self._lock:
                self._waiting.pop(key, None)

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self._follow()
            except (NodeUnavailable, RpcError) as exc:
                log.debug("receipt watcher: %s", exc)
                self._stop.wait(0.5)

    def head_time(self, max_age_s: float = 1.0) -> int | None:
        """The latest block's timestamp as last seen (at most `max_age_s` old), or None."""
        seen = self._head_time
        if seen is None or time.monotonic() - seen[1] > max_age_s:
            return None
        return seen[0]

    def _follow(self) -> None:
        latest = self._rpc.call("eth_getBlockByNumber", ["latest", False])
        head = int(latest["number"], 16)
        self._head_time = (int(latest["timestamp"], 16), time.monotonic())
        if head < self._last_block:  # the chain went back (node restored from an older state)
            self._last_block = head - 1
        if self._last_block < 0:
            self._last_block = head - 1
        while self._last_block < head and not self._stop.is_set():
            number = self._last_block + 1
            if self._waiting:
                for receipt in self._rpc.block_receipts(number):
                    key = str(receipt["transactionHash"]).lower()
                    with self._lock:
                        entry = self._waiting.get(key)
                    if entry is not None:
                        entry[1].append(receipt)
                        entry[0].set()
            self._last_block = number
