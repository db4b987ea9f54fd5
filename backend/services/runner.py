"""One process runs the background work (the event mirror, the transaction monitor), however many worker
processes serve the API.

The workers elect it with a lock only one can hold: a session-level advisory lock on PostgreSQL, held on a
connection of its own for as long as the process runs the work, or a file lock in the data folder on SQLite.
Either dies with its holder (the connection or the file closes with the process), so when the runner dies
another worker takes the lock at its next try, a few seconds later. The others keep answering requests: the
audit endpoints bring the mirror up to the chain's head themselves, whichever process answers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from backend.services.context import Context

log = logging.getLogger(__name__)
RETRY_S = 2.0  # how often a worker that does not run the background work tries to take it over
LOCK_FILE = "background.lock"


class Worker(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class Lock(Protocol):
    def acquire(self) -> bool:
        """Takes the lock if no one holds it; never waits."""

    def held(self) -> bool:
        """Whether this process still holds the lock it took."""

    def release(self) -> None: ...


class AdvisoryLock:
    """pg_try_advisory_lock on a connection outside the pool, kept open while this process tries or holds."""

    def __init__(self, engine: Engine, key: int) -> None:
        self._engine = create_engine(
            engine.url,
            poolclass=NullPool,
            hide_parameters=True,
            connect_args={"connect_timeout": 5, "application_name": "voucher background runner"},
        )
        self._key = key
        self._conn: Connection | None = None
        self._holding = False

    def acquire(self) -> bool:
        try:
            if self._conn is None:
                self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = self._conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}).scalar()
        except SQLAlchemyError:
            self._drop()
            raise
        self._holding = bool(got)
        return self._holding

    def held(self) -> bool:
        if not self._holding or self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))  # a live session keeps its session-level locks
        except SQLAlchemyError:
            self._drop()  # the server ended the session (restart, timeout): the lock went with it
            return False
        return True

    def release(self) -> None:
        if self._conn is not None and self._holding:
            with contextlib.suppress(SQLAlchemyError):  # closing the connection below releases it all the same
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
        self._drop()
        self._engine.dispose()

    def _drop(self) -> None:
        self._holding = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(SQLAlchemyError):
                conn.close()


class FileLock:
    """flock on a file of the data folder (0600): the kernel releases it when the holding process dies."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor of the open file releases its flock


def lock_key(chain_id: int, contract: str) -> int:
    """The advisory lock key of one deployment (a signed 64-bit number), so ledgers sharing a server don't
    block each other's background work."""
    digest = hashlib.sha256(f"voucher background work {chain_id} {contract.lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_for(ctx: Context) -> Lock:
    if ctx.engine.dialect.name == "postgresql":
        return AdvisoryLock(ctx.engine, lock_key(ctx.chain.chain_id, ctx.chain.address))
    return FileLock(ctx.settings.data_dir / LOCK_FILE)


class Runner:
    """Tries for the lock every `retry_s`; while it holds it, runs the workers `make_workers` builds (new ones
    each time it takes the lock), and stops them as soon as it finds the lock lost."""

    def __init__(self, lock: Lock, make_workers: Callable[[], Sequence[Worker]], *, retry_s: float = RETRY_S) -> None:
        self._lock, self._make, self._retry = lock, make_workers, retry_s
        self._workers: list[Worker] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-runner", daemon=True)

    @property
    def leading(self) -> bool:
        """Whether this process runs the background work now."""
        return bool(self._workers)

    def start(self) -> Runner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            while True:
                self._try()
                if self._stop.wait(self._retry):
                    break
        finally:
            self._stop_workers()
            self._lock.release()

    def _try(self) -> None:
        try:
            if self._workers and not self._lock.held():
                log.warning("process %s lost the background lock: it stops the mirror and the monitor", os.getpid())
                self._stop_workers()
            if not self._workers and self._lock.acquire():
                try:
                    workers = list(self._make())
                    for worker in workers:
                        worker.start()
                except BaseException:
                    self._lock.release()  # a lock held without its work would keep every worker from it
                    raise
                self._workers = workers
                log.info("process %s runs the event mirror and the transaction monitor", os.getpid())
        except (SQLAlchemyError, OSError) as exc:  # the database is down: try again at the next round
            log.warning("background runner: %s", type(exc).__name__)

    def _stop_workers(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()
