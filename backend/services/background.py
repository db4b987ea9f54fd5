"""A task the service repeats in its own thread (the transaction monitor, the event mirror): one pass every
interval, and a pass that fails is logged and tried again at the next, never ending the loop."""

from __future__ import annotations

import logging
import threading

from backend.errors import LedgerError, NodeUnavailable
from backend.services.context import Context

log = logging.getLogger(__name__)


class Periodic:
    name = "periodic"

    def __init__(self, ctx: Context, *, interval_s: float = 1.0) -> None:
        self._ctx, self._interval = ctx, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def step(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.step()
            except NodeUnavailable:
                continue  # the node is down: the next pass finds out whether it is back
            except (LedgerError, OSError, ValueError) as exc:
                log.warning("%s: %s", self.name, exc)
