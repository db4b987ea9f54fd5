"""Request and response bodies. Amounts are integers in fen (¥0.01); responses never carry secrets."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from backend.text import unsafe_character

# Amounts and ratios are JSON integers, strictly: not 1.5, not 100.0, not "100", not true.
Fen = Annotated[int, Field(gt=0, le=10**15, strict=True, description="amount in fen (¥0.01)")]
# Ids, offsets and block numbers, in paths, queries and bodies alike: at most 2^53 - 1 (the largest integer a JSON
# client is sure to hold exactly). A bigger one is refused with 422 instead of overflowing a database column.
MAX_INT = 2**53 - 1
Id = Annotated[int, Gt(0), Le(MAX_INT)]
Count = Annotated[int, Ge(0), Le(MAX_INT)]
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_8601_only(value: Any) -> Any:
    """Pydantic would read a number (or a numeric string) as Unix seconds; the API documents ISO 8601 only."""
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("expected an ISO 8601 date-time, e.g. 2026-01-01T00:00:00Z")


Instant = Annotated[datetime, BeforeValidator(_iso_8601_only)]
Category = Literal["intelligent", "general", "supercomputing"]
Role = Literal["admin", "issuer", "finance", "supervisor", "enterprise", "provider"]


class Body(BaseModel):
    """Every request body. Its text, in every field of every subclass, is free of control and invisible
    formatting characters (NUL, ESC, the RTL override, zero-width spaces): they would reach exports and consoles."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _visible_text_only(cls, value: Any) -> Any:
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            if isinstance(text, str) and (char := unsafe_character(text)) is not None:
                # Names the character by its code point: the 422 never carries the text itself.
                raise PydanticCustomError(
                    "unsafe_characters",
                    "must not contain control or invisible formatting characters ({character} found)",
                    {"character": char},
                )
        return value


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
    reason_code: int = Field(default=1, ge=1, lt=2**32, strict=True)


class RelatedPartyRequest(Body):
    enterprise_id: Id
    provider_id: Id
    related: bool = True


class ApiKeyCreate(Body):
    role: Role
    participant_id: Id | None = None
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
    ratio_bps: int = Field(ge=1, le=10_000, strict=True, description="subsidy share of an invoice, basis points")
    budget: Fen
    cap_per_enterprise: Fen
    valid_from: Instant
    valid_until: Instant
    categories: list[Category] = Field(min_length=1, max_length=3)
    provider_ids: list[Id] = Field(default_factory=list, max_length=500)


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
    programme_id: Id
    amount: Fen
    purpose: str = Field(min_length=1, max_length=1000)
    enterprise_id: Id | None = Field(default=None, description="only for staff applying on behalf")


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
    application_ids: list[Id] = Field(min_length=1, max_length=500)


class RejectRequest(Body):
    reason: str = Field(min_length=1, max_length=1000)


class BalancePublic(BaseModel):
    enterprise_id: int
    programme_id: int
    balance: int


class RedemptionCreate(Body):
    enterprise_id: Id
    programme_id: Id
    invoice_number: str = Field(min_length=1, max_length=64)
    invoice_amount: Fen
    category: Category
    amount: Fen | None = Field(
        default=None, description="subsidy asked; default: the ratio's share of the invoice (the balance must cover it)"
    )


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
    programme_id: Id
    enterprise_id: Id
    amount: Fen
    reason_code: int = Field(ge=1, lt=2**32, strict=True)


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
