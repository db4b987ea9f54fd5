"""The block follower: one thread per process follows new blocks and resolves every waiting transaction's future
from each block's receipts (one call per block), so a request waiting for its block holds no thread at all.

A transaction still waiting after `direct_check_s` is looked up on its own (a batch of receipt calls per pass), so
a block the follower missed costs latency, never a result.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

from backend.chain.rpc import Rpc, RpcError
from backend.errors import NodeUnavailable

log = logging.getLogger(__name__)
Receipt = dict[str, Any]


class BlockFollower:
    def __init__(self, rpc: Rpc, *, poll_s: float = 0.02, direct_check_s: float = 1.0) -> None:
        self._rpc = rpc
        self._poll_s = poll_s
        self._direct_check_s = direct_check_s
        self._waiting: dict[str, tuple[Future[Receipt], float]] = {}  # tx hash -> (future, since)
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
        self._thread = threading.Thread(target=self._run, name="block-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def expect(self, tx_hash: str) -> Future[Receipt]:
        """The future of `tx_hash`'s receipt. Register before broadcasting, so a fast block cannot slip past."""
        key = tx_hash.lower()
        with self._lock:
            entry = self._waiting.get(key)
            if entry is None or entry[0].done():
                entry = (Future(), time.monotonic())
                self._waiting[key] = entry
            return entry[0]

    def forget(self, tx_hash: str) -> None:
        """Drops interest in a transaction (it will never be sent, or its waiter gave up)."""
        with self._lock:
            self._waiting.pop(tx_hash.lower(), None)

    async def wait(self, future: Future[Receipt], tx_hash: str, timeout: float) -> Receipt | None:
        """The receipt `future` (from `expect`) brings, or None if it is not mined within `timeout` (the
        transaction stays stored: the monitor finishes it)."""
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
        except TimeoutError:
            return None
        finally:
            self.forget(tx_hash)

    def wait_blocking(self, tx_hash: str, timeout: float) -> Receipt | None:
        future = self.expect(tx_hash)
        try:
            return future.result(timeout)
        except TimeoutError:
            return None
        finally:
            self.forget(tx_hash)

    def head_time(self, max_age_s: float = 1.0) -> int | None:
        """The latest block's timestamp as last seen (at most `max_age_s` old), or None."""
        seen = self._head_time
        if seen is None or time.monotonic() - seen[1] > max_age_s:
            return None
        return seen[0]

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self._follow()
                self._check_stragglers()
            except (NodeUnavailable, RpcError) as exc:
                log.debug("block follower: %s", exc)
                self._stop.wait(0.5)

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
                self._resolve(self._rpc.block_receipts(number))
            self._last_block = number

    def _resolve(self, receipts: list[Receipt]) -> None:
        with self._lock:
            found = [(self._waiting.pop(str(r["transactionHash"]).lower(), None), r) for r in receipts]
        for entry, receipt in found:
            if entry is not None and not entry[0].done():
                entry[0].set_result(receipt)

    def _check_stragglers(self) -> None:
        cutoff = time.monotonic() - self._direct_check_s
        with self._lock:
            late = [h for h, (_f, since) in self._waiting.items() if since < cutoff]
        for i in range(0, len(late), 50):
            chunk = late[i : i + 50]
            receipts = self._rpc.batch([("eth_getTransactionReceipt", [h]) for h in chunk])
            self._resolve([r for r in receipts if isinstance(r, dict)])
            with self._lock:  # looked at: the next direct look comes a while later
                for h in chunk:
                    if (entry := self._waiting.get(h)) is not None:
                        self._waiting[h] = (entry[0], time.monotonic())
