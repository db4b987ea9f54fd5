"""Settlement (兑付) tables: a provider's batch of confirmed redemptions, the lines it holds, and the claim that
keeps a redemption in at most one live batch.

Amounts are integers in fen; times are UTC."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text
from sqlmodel import Field, SQLModel

from backend.models.ledger import big_int, utcnow


class SettlementBatch(SQLModel, table=True):
    """One reimbursement request. `document` is the canonical JSON served by the JSON export, fixed when the
    batch is submitted; `digest` is its keccak256, the hash anchored on chain when finance approves."""

    id: int | None = Field(default=None, primary_key=True)
    provider_id: int = Field(foreign_key="participant.id", index=True)
    period_from: datetime
    period_until: datetime
    # submitted -> approving -> approved ; approving -> submitted (the anchor failed) ; submitted -> returned
    status: str = Field(default="submitted", index=True)
    line_count: int = 0
    subsidy_total: int = big_int(default=0)  # type: ignore[assignment]
    invoice_total: int = big_int(default=0)  # type: ignore[assignment]
    digest: str = ""
    document: str = Field(default="", sa_type=Text)
    created_by_role: str  # provider | finance
    return_reason: str | None = None
    anchor_tx_hash: str | None = None
    anchor_block: int | None = big_int(default=None)  # type: ignore[assignment]
    error_code: str | None = None
    error_message: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None


class SettlementLine(SQLModel, table=True):
    """What a batch held, kept for good (also after the batch is returned); the amounts are in its document."""

    batch_id: int = Field(foreign_key="settlementbatch.id", primary_key=True)
    redemption_id: int = Field(foreign_key="redemption.id", primary_key=True, index=True)


class SettlementClaim(SQLModel, table=True):
    """At most one live batch per redemption: the row exists while its batch is submitted or approved (the
    primary key is the unique constraint two concurrent batch creations meet); returning the batch deletes it."""

    redemption_id: int = Field(foreign_key="redemption.id", primary_key=True)
    batch_id: int = Field(foreign_key="settlementbatch.id", index=True)
