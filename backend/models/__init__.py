"""Database tables, one module per area; importing this package registers them all with SQLModel."""

from backend.models.ledger import (
    Adjustment,
    ApiKey,
    Application,
    ChainTx,
    IdempotencyRecord,
    InvoiceClaim,
    ManagedKey,
    Participant,
    Programme,
    ProgrammeProvider,
    Redemption,
    RelatedParty,
    SignerNonce,
    big_int,
    unix_time,
    utcnow,
)
from backend.models.mirror import ChainEvent, MirrorBlock

__all__ = [
    "Adjustment",
    "ApiKey",
    "Application",
    "ChainEvent",
    "ChainTx",
    "IdempotencyRecord",
    "InvoiceClaim",
    "ManagedKey",
    "MirrorBlock",
    "Participant",
    "Programme",
    "ProgrammeProvider",
    "Redemption",
    "RelatedParty",
    "SignerNonce",
    "big_int",
    "unix_time",
    "utcnow",
]
