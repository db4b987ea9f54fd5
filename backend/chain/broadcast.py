"""Broadcasting signed transactions: one thread sends what arrives together as one JSON-RPC batch, and the node's
answers are read here, in the one place that knows its wording."""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from enum import Enum

from backend.batching import batches
from backend.chain.rpc import Rpc, RpcError
from backend.errors import NodeUnavailable

log = logging.getLogger(__name__)
MAX_BATCH = 100
_KNOWN = ("already known", "known transaction", "already imported", "alreadyknown")


class Sent(Enum):
    ACCEPTED = "accepted"  # the node has it now (sent now, or it already had it)
    NONCE_TOO_LOW = "nonce_too_low"  # its nonce is spent: by this very transaction, mined, or by another one
    UNAVAILABLE = "unavailable"  # the node could not be reached: the transaction stays stored for the monitor


def classify(error: RpcError) -> Sent | None:
    """What a refusal of eth_sendRawTransaction means; None for a real refusal (gas, size, allowlist...)."""
    message = error.message.lower()
    if any(k in message for k in _KNOWN):
        return Sent.ACCEPTED  # web3 and nodes retry: "already known" means the node has it
    if "nonce too low" in message:
        return Sent.NONCE_TOO_LOW
    return None


class Broadcaster:
    """`send` queues a raw transaction; its future gives a `Sent`, or raises the node's RpcError."""

    def __init__(self, rpc: Rpc) -> None:
        self._rpc = rpc
        self._queue: queue.SimpleQueue[tuple[bytes, Future[Sent]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="broadcaster", daemon=True)
        self._thread.start()

    def send(self, raw: bytes) -> Future[Sent]:
        future: Future[Sent] = Future()
        self._queue.put((raw, future))
        return future

    def send_now(self, raw: bytes) -> Sent:
        """One transaction, sent from the calling thread (the monitor's re-sends and fillers)."""
        try:
            self._rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
        except NodeUnavailable:
            return Sent.UNAVAILABLE
        except RpcError as exc:
            if (meaning := classify(exc)) is None:
                raise
            return meaning
        return Sent.ACCEPTED

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        for batch in batches(self._queue, MAX_BATCH):
            self._send(batch)

    def _send(self, batch: list[tuple[bytes, Future[Sent]]]) -> None:
        try:
            answers = self._rpc.batch_each([("eth_sendRawTransaction", ["0x" + raw.hex()]) for raw, _ in batch])
        except NodeUnavailable:
            for _, future in batch:
                future.set_result(Sent.UNAVAILABLE)
            return
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not isinstance(answer, RpcError):
                future.set_result(Sent.ACCEPTED)
            elif (meaning := classify(answer)) is not None:
                future.set_result(meaning)
            else:
                future.set_exception(answer)
