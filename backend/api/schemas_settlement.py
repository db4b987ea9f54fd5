"""Request and response bodies for settlement batches (兑付). Amounts are integers in fen (¥0.01)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from backend.api.schemas import Body, Id, Instant

SettlementStatus = Literal["submitted", "approving", "approved", "returned"]


class SettlementCreate(Body):
    provider_id: Id = Field(description="a provider's key may only name its own participant id")
    period_from: Instant = Field(description="start of the period, inclusive (a time without zone is UTC)")
    period_until: Instant = Field(description="end of the period, exclusive")


class SettlementReturnRequest(Body):
    reason: str = Field(min_length=1, max_length=1000)


class SettlementEnterprise(BaseModel):
    id: int
    name: str
    credit_code: str


class SettlementLinePublic(BaseModel):
    redemption_id: int
    enterprise: SettlementEnterprise
    programme_id: int
    invoice_number: str
    invoice_hash: str = Field(description="the evidence hash the contract recorded against double subsidy")
    invoice_amount: int
    category: str
    subsidy_amount: int
    redemption_tx_hash: str
    redemption_block: int


class SettlementPublic(BaseModel):
    id: int
    provider_id: int
    period_from: datetime
    period_until: datetime
    status: SettlementStatus
    line_count: int
    subsidy_total: int
    invoice_total: int
    digest: str = Field(description="keccak256 of the JSON export; anchored on chain when approved")
    anchor_tx_hash: str | None
    anchor_block: int | None
    return_reason: str | None
    error_code: str | None = Field(description="why the last approval's anchoring failed, if it did")
    error_message: str | None
    created_by_role: str
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None


class SettlementDetail(SettlementPublic):
    lines: list[SettlementLinePublic]
