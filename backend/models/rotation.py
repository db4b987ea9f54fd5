"""Key rotation: the managed addresses a participant used before, each linked to the one that replaced it.

A row is written when a rotation starts (status "rotating") and completed when every step is on chain
("retired"); the chain's VoucherMigrated events link the same two addresses for anyone reading logs alone."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlmodel import Field, SQLModel

from backend.models.ledger import utcnow


class FormerAddress(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    address: str = Field(unique=True, index=True)  # retired: frozen on chain, holds nothing
    new_address: str = Field(unique=True)  # the key that replaced it (kept while the rotation is under way)
    status: str = "rotating"  # rotating -> retired
    migration_tx: str | None = None  # the migrateHolder transaction; None when there was nothing to move
    started_at: datetime = Field(default_factory=utcnow)
    retired_at: datetime | None = None


class FormerAddressPublic(BaseModel):
    participant_id: int
    address: str
    new_address: str
    status: str
    migration_tx: str | None
    started_at: datetime
    retired_at: datetime | None
