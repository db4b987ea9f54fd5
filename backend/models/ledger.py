"""The ledger's own tables: participants, keys, programmes, applications, redemptions, transactions.

Amounts are integers in fen (BigInteger: budgets pass 2^31 fen); times are UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def unix_time(dt: datetime) -> int:
    """Seconds since the epoch, the chain's clock; a naive datetime (as SQLite returns them) is UTC."""
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())


def big_int(**kw: object) -> object:
    return Field(sa_type=BigInteger, **kw)  # type: ignore[call-overload]


class Participant(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)  # "enterprise" | "provider"
    name: str
    credit_code: str = Field(unique=True)
    region_code: str = ""
    industry: str = ""
    size: str = ""
    categories: int = 0  # providers: bit mask of compute categories offered
    address: str = Field(unique=True, index=True)
    frozen: bool = False
    first_redemption_at: datetime | None = None
    next_consent_nonce: int = big_int(default=0)  # type: ignore[assignment]
    created_at: datetime = Field(default_factory=utcnow)


class RelatedParty(SQLModel, table=True):
    enterprise_id: int = Field(foreign_key="participant.id", primary_key=True)
    provider_id: int = Field(foreign_key="participant.id", primary_key=True)


class ApiKey(SQLModel, table=True):
    id: str = Field(primary_key=True)  # the public half, shown in listings
    secret_hash: str
    role: str
    participant_id: int | None = Field(default=None, foreign_key="participant.id")
    label: str = ""
    revoked_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ManagedKey(SQLModel, table=True):
    address: str = Field(primary_key=True)
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    purpose: str  # "participant" or "operator:<role>"
    created_at: datetime = Field(default_factory=utcnow)


class Programme(SQLModel, table=True):
    id: int = Field(primary_key=True)  # the token id on chain
    name: str
    ratio_bps: int
    budget: int = big_int()  # type: ignore[assignment]
    cap_per_enterprise: int = big_int()  # type: ignore[assignment]
    valid_from: datetime
    valid_until: datetime
    categories: int
    tx_hash: str
    created_at: datetime = Field(default_factory=utcnow)


class ProgrammeProvider(SQLModel, table=True):
    programme_id: int = Field(foreign_key="programme.id", primary_key=True)
    provider_id: int = Field(foreign_key="participant.id", primary_key=True)


class Application(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    enterprise_id: int = Field(foreign_key="participant.id", index=True)
    programme_id: int = Field(foreign_key="programme.id", index=True)
    amount: int = big_int()  # type: ignore[assignment]
    purpose: str
    status: str = "pending"  # pending | issuing | issued | rejected | failed
    approved_amount: int | None = big_int(default=None)  # type: ignore[assignment]
    reason: str | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None


class Redemption(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    provider_id: int = Field(foreign_key="participant.id", index=True)
    enterprise_id: int = Field(foreign_key="participant.id", index=True)
    programme_id: int = Field(foreign_key="programme.id", index=True)
    invoice_number: str
    invoice_hash: str = Field(index=True)
    invoice_amount: int = big_int()  # type: ignore[assignment]
    category: int
    amount: int = big_int()  # type: ignore[assignment]
    # pending -> submitting -> confirmed | failed ; pending -> refused | expired (not confirmed in time)
    status: str = Field(default="pending", index=True)
    consent_nonce: int | None = big_int(default=None)  # type: ignore[assignment]
    deadline: int | None = big_int(default=None)  # type: ignore[assignment]
    tx_hash: str | None = None
    block_number: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Adjustment(SQLModel, table=True):
    """Vouchers removed by the issuer (reclaim after expiry) or a supervisor (revoke), per holder."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str  # reclaim | revoke
    programme_id: int = Field(foreign_key="programme.id", index=True)
    enterprise_id: int = Field(foreign_key="participant.id", index=True)
    amount: int = big_int()  # type: ignore[assignment]
    reason_code: int | None = None
    tx_hash: str
    block_number: int
    created_at: datetime = Field(default_factory=utcnow)


class InvoiceClaim(SQLModel, table=True):
    """At most one live claim per invoice and provider: the row exists while the claim is pending (until it
    expires), submitting or confirmed. Another provider's claim on the same invoice is not blocked here, or a
    pending claim could lock an invoice away from the provider who really served it: the contract's single use
    of the invoice hash decides between them."""

    # A new table: the earlier one ("invoiceclaim") was keyed by the invoice alone; it is left unused.
    __tablename__ = "invoice_claim"
    invoice_hash: str = Field(primary_key=True)
    provider_id: int = Field(foreign_key="participant.id", primary_key=True)
    redemption_id: int = Field(foreign_key="redemption.id")


class ChainTx(SQLModel, table=True):
    """Every transaction the service signs, stored before it is broadcast."""

    __table_args__ = (UniqueConstraint("signer", "nonce"),)
    id: int | None = Field(default=None, primary_key=True)
    signer: str = Field(index=True)
    nonce: int = big_int()  # type: ignore[assignment]
    tx_hash: str = Field(unique=True)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    kind: str
    ref: str = ""
    status: str = Field(default="signed", index=True)  # signed | sent | confirmed | reverted | replaced
    block_number: int | None = None
    error_code: str | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SignerNonce(SQLModel, table=True):
    address: str = Field(primary_key=True)
    next_nonce: int = big_int()  # type: ignore[assignment]


class IdempotencyRecord(SQLModel, table=True):
    key: str = Field(primary_key=True)
    api_key_id: str = Field(primary_key=True)
    request_hash: str
    state: str = "in_progress"  # in_progress | done
    status_code: int | None = None
    response: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    owner: str = ""  # host/pid/start time of the process running it: a retry takes over once it is gone
