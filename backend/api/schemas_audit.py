"""Response bodies of the supervisors' audit trail and reconciliation. Amounts are integers in fen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditEventPublic(BaseModel):
    id: int
    event: str
    block_number: int
    block_hash: str
    block_time: datetime
    tx_hash: str
    log_index: int
    programme_id: int | None
    account: str | None = Field(description="the holder, enterprise or participant the event concerns")
    provider: str | None
    amount: int | None = Field(description="fen, where the event moves vouchers")
    args: dict[str, Any] = Field(description="every argument of the event; numbers as decimal strings")


class AuditEventPage(BaseModel):
    block: int = Field(description="the mirror is complete up to this block")
    events: list[AuditEventPublic]
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last page")


class HoldingPublic(BaseModel):
    programme_id: int
    issued: int
    redeemed: int
    reclaimed: int
    revoked: int
    migrated_in: int
    migrated_out: int
    balance: int


class EnterpriseStatement(BaseModel):
    enterprise_id: int
    address: str
    block: int
    programmes: list[HoldingPublic]


class ProviderProgrammeFigures(BaseModel):
    programme_id: int
    redemptions: int
    subsidy: int
    invoices: int = Field(description="invoice amounts the subsidy was paid against")
    subsidy_by_category: dict[str, int]


class ProviderStatement(BaseModel):
    provider_id: int
    address: str
    block: int
    programmes: list[ProviderProgrammeFigures]


class DifferencePublic(BaseModel):
    kind: str = Field(description="balance | programme | redemption")
    subject: dict[str, Any]
    service: Any = Field(description="what the service's records say (null: no record)")
    mirror: Any = Field(description="what the event mirror says")
    chain: Any = Field(description="the chain's state at `block`")


class ReconciliationPublic(BaseModel):
    block: int
    checked: dict[str, int]
    differences: list[DifferencePublic]
