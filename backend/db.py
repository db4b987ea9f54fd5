"""The database engine: SQLite in the data folder by default, PostgreSQL when DATABASE_URL points at one."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel, create_engine

from backend import models  # noqa: F401  (registers the tables)
from backend.private_files import create_private_file


def make_engines(url: str) -> tuple[Engine, Engine]:
    """(writer, reader). On PostgreSQL both are the same engine. On SQLite the writer takes the write lock at
    BEGIN and the reader never does, so reads run side by side (WAL) while writers queue.

    `hide_parameters`: a failing statement's values (ciphertexts, API key digests) stay out of errors and logs.
    """
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith("sqlite"):
        # PostgreSQL allows 100 connections by default, shared by every worker process.
        engine = create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, hide_parameters=True)
        return engine, engine
    path = make_url(url).database
    lock_file = None
    if path and path != ":memory:" and not path.startswith("file:"):
        create_private_file(Path(path))  # SQLite gives its -wal and -shm files the database file's mode
        lock_file = Path(path + "-writer.lock")
        create_private_file(lock_file)
    args = {"check_same_thread": False, "timeout": 30}
    writer = create_engine(url, connect_args=args, pool_size=16, max_overflow=16, hide_parameters=True)
    reader = create_engine(url, connect_args=args, pool_size=32, max_overflow=64, hide_parameters=True)
    _sqlite_transactions(writer, "BEGIN IMMEDIATE", lock_file)
    _sqlite_transactions(reader, "BEGIN")
    return writer, reader


def make_engine(url: str) -> Engine:
    return make_engines(url)[0]


def _sqlite_transactions(engine: Engine, begin: str, lock_file: Path | None = None) -> None:
    """SQLite: WAL, and transactions begun by us.

    The writer begins with BEGIN IMMEDIATE: a deferred transaction that reads and then writes can fail at once
    with "database is locked" when another writer got there first. And this process's writers queue on a lock
    before that: SQLite's busy handler polls with sleeps of up to 100 ms, so under load writers waited seconds
    for a lock held a millisecond at a time. Writers from other processes still meet the busy handler.
    """
    lock = threading.Lock() if begin == "BEGIN IMMEDIATE" else None
    # Writers of other worker processes queue on a file lock too: the kernel wakes the next one the moment the
    # lock is free, where SQLite's busy handler would have slept.
    lock_fd = os.open(lock_file, os.O_RDWR | os.O_NOFOLLOW) if lock is not None and lock_file else None

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let us issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if lock is not None:
            lock.acquire()
            if lock_fd is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            conn.info["holds_write_lock"] = True
        try:
            conn.exec_driver_sql(begin)
        except BaseException:
            _release(conn)
            raise

    def _release(conn: Any) -> None:
        if lock is not None and conn.info.pop("holds_write_lock", False):
            if lock_fd is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
            lock.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)


def init_db(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    _add_new_columns(engine)


def _add_new_columns(engine: Engine) -> None:
    """Columns added to a table after a database was made (each with a default), added to it in place."""
    with engine.begin() as conn:
        existing = inspect(conn)  # on the same connection: the writer's lock is taken once
        for table in SQLModel.metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                default = getattr(column.default, "arg", None)
                literal = "" if default is None or callable(default) else f" DEFAULT {default!r}"
                conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}{literal}')


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A short unit of work: committed on success, rolled back on any error. Never hold one across RPC calls."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
