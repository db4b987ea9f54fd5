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
from backend.models.rotation import FormerAddress
from backend.models.settlement import SettlementBatch, SettlementClaim, SettlementLine

__all__ = [
    "Adjustment",
    "ApiKey",
    "Application",
    "ChainEvent",
    "ChainTx",
    "FormerAddress",
    "IdempotencyRecord",
    "InvoiceClaim",
    "ManagedKey",
    "MirrorBlock",
    "Participant",
    "Programme",
    "ProgrammeProvider",
    "Redemption",
    "RelatedParty",
    "SettlementBatch",
    "SettlementClaim",
    "SettlementLine",
    "SignerNonce",
    "big_int",
    "unix_time",
    "utcnow",
]
