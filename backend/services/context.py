"""What every service function gets: settings, the database (reads, and writes through the group writer), the
chain view, the managed keys and the operator addresses. Built by `backend.services.wiring`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel

from backend.chain.keystore import EncryptedKeyStore
from backend.chain.ledger import VoucherChain
from backend.chain.pipeline import TxPipeline
from backend.chain.receipts import BlockFollower
from backend.errors import NotFound
from backend.groupcommit import GroupWriter
from backend.models import utcnow
from backend.settings import Settings

T = TypeVar("T", bound=SQLModel)
R = TypeVar("R")


@dataclass
class Context:
    settings: Settings
    engine: Engine
    chain: VoucherChain
    keys: EncryptedKeyStore
    operators: dict[str, str]  # role -> managed address that acts for it on chain
    writer: GroupWriter
    reads: GroupWriter  # the same machinery, read-only: async routes read through it
    reader: Engine | None = None  # read-only sessions; the writer when not set
    extras: dict[str, object] = field(default_factory=dict)
    # The service's wall clock (claims expire by it); tests move it instead of waiting days.
    clock: Callable[[], datetime] = field(default=utcnow)

    def read(self) -> Session:
        """A session for reads only (on SQLite it never takes the write lock)."""
        return Session(self.reader or self.engine, expire_on_commit=False)

    def fetch(self, model: type[T], ident: object, resource: str) -> T:
        """The row with primary key `ident`, or NotFound naming `resource`."""
        with self.read() as s:
            row = s.get(model, ident)
        if row is None:
            raise NotFound(resource, ident)
        return row

    @property
    def follower(self) -> BlockFollower:
        return self.pipeline.follower

    async def read_async(self, read: Callable[[Session], R]) -> R:
        """Runs `read` with a read session on the reader thread (reads arriving together share a snapshot), for
        async routes: neither the event loop nor a thread per request waits on the database."""

        def run(conn: Connection) -> R:
            with Session(bind=conn, expire_on_commit=False) as s:
                return read(s)

        return await self.reads.run_async(run)

    async def first_async(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        """The first row of a Core statement (or None), read on the reader thread: the hot paths' reads."""
        return await self.reads.run_async(lambda conn: conn.execute(statement, params).first())

    def write(self) -> Session:
        """A session that writes: keep it short and never hold it across a call to the chain."""
        return Session(self.engine, expire_on_commit=False)

    @property
    def pipeline(self) -> TxPipeline:
        assert self.chain.pipeline is not None
        return self.chain.pipeline

    def close(self) -> None:
        for worker in self.extras.values():  # background threads (monitor, event mirror) stop first
            stop = getattr(worker, "stop", None)
            if stop is not None:
                stop()
        self.follower.stop()
        self.pipeline.close()
        self.writer.stop()
        self.reads.stop()
        self.chain.rpc.close()
        self.engine.dispose()
        if self.reader is not None:
            self.reader.dispose()
