"""The names of things that move: transaction kinds and the states of transactions and redemptions.

StrEnums: stored as their plain string values, so rows written before they existed read back unchanged."""

from __future__ import annotations

from enum import StrEnum


class TxKind(StrEnum):
    """What a stored transaction does; its completion handler is chosen by it (services/completions.py)."""

    REGISTER = "register"
    GRANT_ROLE = "grant_role"
    CREATE_PROGRAMME = "create_programme"
    ISSUE = "issue"
    REDEEM = "redeem"
    RECLAIM = "reclaim"
    REVOKE = "revoke"
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    RELATED_PARTY = "related_party"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    SETTLEMENT_ANCHOR = "settlement_anchor"
    ANCHOR = "anchor"  # a report's hash recorded on chain, with no record of its own to finish
    ROTATE_KEY = "rotate_key"
    ROTATE_KEY_MIGRATE = "rotate_key_migrate"


class TxStatus(StrEnum):
    SIGNED = "signed"  # stored, maybe sent, no outcome yet
    CONFIRMED = "confirmed"
    REVERTED = "reverted"
    REPLACED = "replaced"  # its nonce went to another transaction of the same key
    DROPPED = "dropped"  # the node would not take it; a filler took its nonce


class RedemptionStatus(StrEnum):
    PENDING = "pending"  # claimed by the provider, waiting for the enterprise
    SUBMITTING = "submitting"  # confirmed by the enterprise, its burn stored and sent
    CONFIRMED = "confirmed"
    FAILED = "failed"
    REFUSED = "refused"
    EXPIRED = "expired"
