"""One tree of domain errors. Each class carries its machine-readable code and HTTP status and builds its
own message; the API maps them to JSON in one handler. Messages never include secrets."""

from __future__ import annotations

from typing import Any, ClassVar


class LedgerError(Exception):
    """Base of every refusal the service gives a caller."""

    code: ClassVar[str] = "ledger_error"
    status: ClassVar[int] = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


# ---------------------------------------------------------------- access
class Unauthenticated(LedgerError):
    code, status = "unauthenticated", 401


class Forbidden(LedgerError):
    code, status = "forbidden", 403


class CallerFrozen(Forbidden):
    """The participant the API key belongs to is frozen by a supervisor: its key does nothing until unfrozen."""

    code = "account_frozen"


class NotFound(LedgerError):
    code, status = "not_found", 404

    def __init__(self, resource: str, ident: object) -> None:
        super().__init__(f"{resource} {ident} does not exist or is not visible to you", resource=resource, id=ident)


class RateLimited(LedgerError):
    code, status = "rate_limited", 429


# ---------------------------------------------------------------- input
class InvalidInput(LedgerError):
    code, status = "invalid_input", 422


class InvalidInvoiceNumber(InvalidInput):
    """Invoice numbers are digits and Latin letters (spaces and hyphens between them are ignored): look-alike
    characters (fullwidth digits, zero-width spaces) would give one invoice a second hash and a second subsidy."""

    code = "invalid_invoice_number"

    def __init__(self, character: str | None) -> None:
        problem = f"{character} is not one of them" if character else "it has none"
        super().__init__(
            f"an invoice number is digits and Latin letters, optionally grouped with spaces or hyphens; {problem}",
            field="invoice_number",
            character=character,
        )


class IdempotencyKeyReused(LedgerError):
    code, status = "idempotency_key_reused", 422


class IdempotencyInProgress(LedgerError):
    code, status = "idempotency_in_progress", 409


# ---------------------------------------------------------------- state and rules
class Conflict(LedgerError):
    code, status = "conflict", 409


class AlreadyExists(Conflict):
    code = "already_exists"


class InvalidState(Conflict):
    code = "invalid_state"


class BudgetExceeded(Conflict):
    code = "budget_exceeded"


class CapExceeded(Conflict):
    code = "cap_exceeded"


class InsufficientBalance(Conflict):
    code = "insufficient_balance"


class InvoiceAlreadyRedeemed(Conflict):
    code = "invoice_already_redeemed"


def _duration(seconds: int) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


class ClaimExpired(Conflict):
    """A claim the enterprise neither confirmed nor refused in time is void: it holds the invoice no longer."""

    code = "claim_expired"

    def __init__(self, redemption_id: int, ttl_s: int) -> None:
        super().__init__(
            f"claim {redemption_id} expired: claims not confirmed within {_duration(ttl_s)} are void; "
            "the provider may claim the invoice again",
            redemption_id=redemption_id,
            ttl_s=ttl_s,
        )


class ExceedsSubsidy(Conflict):
    code = "exceeds_subsidy_ratio"


class ProgrammeExpired(Conflict):
    code = "programme_expired"


class ProgrammeNotStarted(Conflict):
    code = "programme_not_started"


class ProgrammeStillActive(Conflict):
    code = "programme_still_active"


class AccountFrozen(Conflict):
    code = "account_frozen"


class ProviderNotInProgramme(Conflict):
    code = "provider_not_in_programme"


class CategoryNotAllowed(Conflict):
    code = "category_not_allowed"


class RelatedParty(Conflict):
    code = "related_party"


class ConsentRejected(Conflict):
    code = "consent_rejected"


class LedgerPaused(Conflict):
    code = "ledger_paused"


# ---------------------------------------------------------------- chain
class ChainError(LedgerError):
    code, status = "chain_error", 502


class ChainReverted(ChainError):
    """The contract refused for a reason the service did not foresee; the decoded error is attached."""

    code = "chain_reverted"


class NodeUnavailable(ChainError):
    code, status = "node_unavailable", 503


class TransactionPending(ChainError):
    """Sent, but no receipt yet within the wait; the transaction is still tracked and will be resolved."""

    code, status = "transaction_pending", 202


class TransactionDropped(ChainError):
    """The node would not take a stored transaction, or its nonce went to another one: it will never be mined."""

    code = "transaction_dropped"


class NonceSpent(ChainError):
    """The node refused a transaction because its signer's key already used that nonce (sent outside the service).
    The pipeline signs the same call again at the chain's next nonce once; this is the answer if that fails too."""

    code = "nonce_spent"

    def __init__(self, tx_hash: str, node_message: str) -> None:
        super().__init__(
            f"the node refused transaction {tx_hash}: its nonce was already used by another transaction of the same "
            f"key ({node_message})",
            tx_hash=tx_hash,
        )


# ---------------------------------------------------------------- settlement
class SettlementPeriodEmpty(Conflict):
    """No confirmed redemption of the provider, outside any live batch, was confirmed in the period."""

    code = "settlement_period_empty"


class SettlementRedemptionsTaken(Conflict):
    """Another batch took the same redemptions at the same moment, again and again: try once more."""

    code = "settlement_redemptions_taken"


class SettlementAlreadyApproved(InvalidState):
    code = "settlement_already_approved"


class SettlementAlreadyReturned(InvalidState):
    code = "settlement_already_returned"


class SettlementApprovalInProgress(InvalidState):
    """Its anchoring transaction is on its way; the batch becomes approved (or submitted again) once it is mined."""

    code = "settlement_approval_in_progress"


class SettlementAlreadyAnchored(Conflict):
    """The chain already holds this batch's digest: an earlier approval was mined but not yet recorded."""

    code = "settlement_already_anchored"


# ---------------------------------------------------------------- rotation
class RotationInProgress(Conflict):
    """Another request is rotating the same participant's key right now."""

    code = "rotation_in_progress"


class RotationInterrupted(LedgerError):
    """A step of a key rotation failed; what is done stays done, and repeating the request carries on.

    503, not 409: the idempotency layer keeps no final answer for it, so a repeat with the same key resumes.
    """

    code, status = "rotation_interrupted", 503
