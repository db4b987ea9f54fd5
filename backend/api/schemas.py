"""Request and response bodies. Amounts are integers in fen (¥0.01); responses never carry secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Fen = Annotated[int, Field(gt=0, le=10**15, description="amount in fen (¥0.01)")]
Category = Literal["intelligent", "general", "supercomputing"]
Role = Literal["admin", "issuer", "finance", "supervisor", "enterprise", "provider"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EnterpriseCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    credit_code: str = Field(min_length=18, max_length=18, description="unified social credit code")
    region_code: str = Field(default="", max_length=12, description="administrative division code, e.g. 131000")
    industry: str = Field(default="", max_length=100)
    size: Literal["micro", "small", "medium", ""] = ""


class ProviderCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    credit_code: str = Field(min_length=18, max_length=18)
    region_code: str = Field(default="", max_length=12)
    categories: list[Category] = Field(min_length=1, max_length=3)


class ParticipantPublic(BaseModel):
    id: int
    kind: str
    name: str
    credit_code: str
    region_code: str
    industry: str
    size: str
    categories: list[str]
    address: str
    frozen: bool
    created_at: datetime


class FreezeRequest(Body):
    reason_code: int = Field(default=1, ge=1, lt=2**32)


class RelatedPartyRequest(Body):
    enterprise_id: int = Field(gt=0)
    provider_id: int = Field(gt=0)
    related: bool = True


class ApiKeyCreate(Body):
    role: Role
    participant_id: int | None = Field(default=None, gt=0)
    label: str = Field(default="", max_length=100)


class ApiKeyPublic(BaseModel):
    id: str
    role: str
    participant_id: int | None
    label: str
    revoked_at: datetime | None
    created_at: datetime


class ApiKeyCreated(ApiKeyPublic):
    secret: str = Field(description="shown once; store it now")


class ProgrammeCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    ratio_bps: int = Field(ge=1, le=10_000, description="subsidy share of an invoice, basis points")
    budget: Fen
    cap_per_enterprise: Fen
    valid_from: datetime
    valid_until: datetime
    categories: list[Category] = Field(min_length=1, max_length=3)
    provider_ids: list[int] = Field(default_factory=list, max_length=500)


class ProgrammePublic(BaseModel):
    id: int
    name: str
    ratio_bps: int
    budget: int
    cap_per_enterprise: int
    valid_from: datetime
    valid_until: datetime
    categories: list[str]
    provider_ids: list[int]
    issued: int
    redeemed: int
    reclaimed: int
    revoked: int
    outstanding: int
    remaining: int = Field(description="budget still available for issuance")
    tx_hash: str


class ApplicationCreate(Body):
    programme_id: int = Field(gt=0)
    amount: Fen
    purpose: str = Field(min_length=1, max_length=1000)
    enterprise_id: int | None = Field(default=None, gt=0, description="only for staff applying on behalf")


class ApplicationPublic(BaseModel):
    id: int
    enterprise_id: int
    programme_id: int
    amount: int
    purpose: str
    status: str
    approved_amount: int | None
    reason: str | None
    tx_hash: str | None
    block_number: int | None
    created_at: datetime
    decided_at: datetime | None


class ApproveRequest(Body):
    amount: Fen | None = Field(default=None, description="approve less than applied for")


class BatchApproveRequest(Body):
    application_ids: list[int] = Field(min_length=1, max_length=500)


class RejectRequest(Body):
    reason: str = Field(min_length=1, max_length=1000)


class BalancePublic(BaseModel):
    enterprise_id: int
    programme_id: int
    balance: int


class RedemptionCreate(Body):
    enterprise_id: int = Field(gt=0)
    programme_id: int = Field(gt=0)
    invoice_number: str = Field(min_length=1, max_length=64)
    invoice_amount: Fen
    category: Category
    amount: Fen | None = Field(default=None, description="subsidy asked; default: the ratio's share, up to the balance")


class RedemptionPublic(BaseModel):
    id: int
    provider_id: int
    enterprise_id: int
    programme_id: int
    invoice_number: str
    invoice_hash: str
    invoice_amount: int
    category: str
    amount: int
    status: str
    tx_hash: str | None
    block_number: int | None
    error_code: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime


class RefuseRequest(Body):
    reason: str = Field(min_length=1, max_length=1000)


class RevokeRequest(Body):
    programme_id: int = Field(gt=0)
    enterprise_id: int = Field(gt=0)
    amount: Fen
    reason_code: int = Field(ge=1, lt=2**32)


class ChainActionPublic(BaseModel):
    tx_hashes: list[str]
    amount: int
    holders: int


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, object] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody
