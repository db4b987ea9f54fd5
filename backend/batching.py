"""Taking work off a queue in batches: what arrived together goes together (one transaction, one JSON-RPC batch)."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def batches(work: queue.SimpleQueue[T | None], limit: int) -> Iterator[list[T]]:
    """Blocks for the first item, then takes whatever else is already waiting, up to `limit`; ends at None (the
    stop mark, put after the work it should follow)."""
    while (first := work.get()) is not None:
        batch = [first]
        while len(batch) < limit:
            try:
                item = work.get_nowait()
            except queue.Empty:
                break
            if item is None:
                work.put(None)  # stop after this batch
                break
            batch.append(item)
        yield batch
