"""Group commit: one writer thread per process runs the writes that arrive together in one database transaction.

Each write is a function of a Connection. Queued writes are taken in a batch and run in one transaction, committed
together with a single COMMIT (one fsync on SQLite, one round trip on PostgreSQL). Should one raise, the batch runs
again with a SAVEPOINT for each write, so that one is undone alone and its caller gets the error. A caller's write
is durable when its future resolves. Async callers await it; threads wait on it; nothing else holds the write lock.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from backend.batching import batches

log = logging.getLogger(__name__)
T = TypeVar("T")
Write = Callable[[Connection], T]
Result = tuple[Future[Any], Any, BaseException | None]
MAX_BATCH = 64  # writes per transaction: enough to share the commit, few enough to keep each batch short
TRANSIENT_RETRIES = 8  # runs of a batch that deadlocked with another worker's


class _RetryIsolated(Exception):
    """A write of an optimistic batch raised: run the batch again, each write in a savepoint."""


class GroupWriter:
    """The writer: each write in a savepoint of the batch's transaction, committed together.

    With `read_only`, the same machinery serves reads: a batch runs in one read transaction (one snapshot, taken
    after the batch was gathered) on one connection kept open, so reads from many requests need neither a thread
    each nor a connection each."""

    def __init__(self, engine: Engine, *, name: str = "db-writer", read_only: bool = False) -> None:
        self._engine = engine
        self._read_only = read_only
        self._queue: queue.SimpleQueue[tuple[Write[Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self._conn: Connection | None = None  # the reader's connection, kept open between batches

    @property
    def engine(self) -> Engine:
        return self._engine

    def submit(self, write: Write[T]) -> Future[T]:
        """Queues `write`; the future gives its result once its batch has committed (or its error)."""
        if threading.current_thread() is self._thread:  # a write from inside a write would wait on itself
            raise RuntimeError("a write cannot queue another write")
        if not self._started:
            with self._lock:
                if not self._started:
                    self._thread.start()
                    self._started = True
        future: Future[T] = Future()
        self._queue.put((write, future))
        return future

    def run(self, write: Write[T]) -> T:
        """Runs `write` and waits for its commit (for code running in a thread)."""
        return self.submit(write).result()

    async def run_async(self, write: Write[T]) -> T:
        """Runs `write` and awaits its commit, without holding a thread of the caller's."""
        return await asyncio.wrap_future(self.submit(write))

    def stop(self) -> None:
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout=10)
        if self._conn is not None:
            self._conn.close()

    def _run(self) -> None:
        for batch in batches(self._queue, MAX_BATCH):
            self._commit(batch)

    def _commit(self, batch: list[tuple[Write[Any], Future[Any]]]) -> None:
        if self._read_only:
            self._read(batch)
            return
        live = [(w, f) for w, f in batch if f.set_running_or_notify_cancel()]
        # Optimistic: the writes one after another in one transaction. Should one raise, that transaction is
        # rolled back and the batch runs again with a savepoint each, so only the failing write is undone (writes
        # are functions of the database alone: running one again gives the same result). A deadlock with another
        # worker process's batch (PostgreSQL aborts one of them) runs the whole batch again.
        for attempt in range(1, TRANSIENT_RETRIES + 1):
            try:
                try:
                    results = self._run_batch(live, isolated=False)
                except _RetryIsolated as retry:
                    if _transient(retry.__cause__):
                        raise retry.__cause__ from None  # type: ignore[misc]
                    results = self._run_batch(live, isolated=True)
            except Exception as exc:
                if _transient(exc) and attempt < TRANSIENT_RETRIES:
                    time.sleep(random.uniform(0, 0.01 * attempt))  # the other transaction finishes meanwhile
                    continue
                self._fail(live, exc)
                return
            break
        _settle(results)

    def _run_batch(self, batch: list[tuple[Write[Any], Future[Any]]], *, isolated: bool) -> list[Result]:
        results: list[Result] = []
        with self._engine.connect() as conn, conn.begin():
            for write, future in batch:
                if not isolated:
                    try:
                        results.append((future, write(conn), None))
                    except Exception as exc:
                        raise _RetryIsolated from exc
                    continue
                savepoint = conn.begin_nested()
                try:
                    value = write(conn)
                except Exception as exc:
                    savepoint.rollback()
                    results.append((future, None, exc))
                    continue
                savepoint.commit()
                results.append((future, value, None))
        return results

    def _fail(self, batch: list[tuple[Write[Any], Future[Any]]], exc: Exception) -> None:
        log.warning("a group of %d writes failed to commit: %s", len(batch), type(exc).__name__)
        for _write, future in batch:
            if not future.done():
                future.set_exception(exc)

    def _read(self, batch: list[tuple[Write[Any], Future[Any]]]) -> None:
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
            conn = self._conn
            transaction = conn.begin()
            for read, future in batch:
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    results.append((future, read(conn), None))
                except Exception as exc:
                    results.append((future, None, exc))
                    transaction.rollback()  # PostgreSQL refuses anything more in a transaction after an error
                    transaction = conn.begin()
            transaction.rollback()  # nothing to keep: reads only
        except Exception as exc:
            if self._conn is not None:
                self._conn.invalidate()
                self._conn = None
            answered = {id(f) for f, _v, _e in results}
            results += [(f, None, exc) for _r, f in batch if id(f) not in answered and not f.done()]
        _settle(results)


def _transient(exc: BaseException | None) -> bool:
    """A deadlock or serialization failure: nothing is wrong with the writes, running them again succeeds."""
    return isinstance(exc, OperationalError) and getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


def _settle(results: list[tuple[Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in results:
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
