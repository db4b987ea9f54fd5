"""The event mirror's tables: every contract log as the chain has it, and the blocks it was read up to."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from backend.models.ledger import big_int


class ChainEvent(SQLModel, table=True):
    """One log of the voucher contract. `args` holds every argument as JSON (numbers as decimal strings);
    the columns beside it repeat what supervisors filter and sum on."""

    __table_args__ = (UniqueConstraint("block_number", "log_index"),)
    id: int | None = Field(default=None, primary_key=True)
    block_number: int = big_int(index=True)  # type: ignore[assignment]
    block_hash: str
    block_time: datetime = Field(index=True)
    tx_hash: str = Field(index=True)
    log_index: int
    name: str = Field(index=True)
    programme_id: int | None = big_int(default=None, index=True)  # type: ignore[assignment]
    account: str | None = Field(default=None, index=True)  # the holder, enterprise or participant concerned
    provider: str | None = Field(default=None, index=True)
    amount: int | None = big_int(default=None)  # type: ignore[assignment]  # fen; None when none or beyond int64
    args: str

    def arguments(self) -> dict[str, Any]:
        """Every argument of the event, decoded from `args` (numbers as decimal strings)."""
        return dict(json.loads(self.args))


class MirrorBlock(SQLModel, table=True):
    """Blocks the mirror has read, with their hashes: the newest is the checkpoint, and the hashes let it find
    where a chain that changed under it (a reorg, a node restored from an older state) parted from it."""

    number: int = big_int(primary_key=True)  # type: ignore[assignment]
    hash: str
