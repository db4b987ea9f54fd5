"""Redemption: a provider claims against a paid invoice; the enterprise confirms (its managed key signs the
EIP-712 consent) or refuses; the provider's managed key submits the burn. One live claim per invoice."""

from __future__ import annotations

from datetime import UTC, datetime

from eth_utils import keccak
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from backend.chain.consent import Redemption as Consent
from backend.chain.consent import consent_digest
from backend.errors import (
    AccountFrozen,
    CategoryNotAllowed,
    ExceedsSubsidy,
    InsufficientBalance,
    InvalidInput,
    InvalidState,
    InvoiceAlreadyRedeemed,
    LedgerError,
    LedgerPaused,
    NotFound,
    ProgrammeExpired,
    ProgrammeNotStarted,
    ProviderNotInProgramme,
    RelatedParty,
    TransactionPending,
)
from backend.models import InvoiceClaim, Participant, Programme, ProgrammeProvider, Redemption, utcnow
from backend.models import RelatedParty as RelatedPartyRow
from backend.money import yuan
from backend.services.context import Context
from backend.services.participants import CATEGORIES

MAX_INVOICE_FEN = 10**15
# A redeem burns about 93k-110k gas; a fixed limit skips the dry run on the hot path (gas is free here, and a
# refusal the claim checks did not foresee is mined, replayed and decoded like any other).
REDEEM_GAS = 200_000  # ¥10 trillion: anything larger is a typo, not an invoice


def _ts(dt: datetime) -> int:
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())


def invoice_hash(invoice_number: str) -> str:
    normalized = "".join(invoice_number.split()).upper()
    return "0x" + keccak(text=f"invoice:{normalized}").hex()


def claim(
    ctx: Context,
    *,
    provider_id: int,
    enterprise_id: int,
    programme_id: int,
    invoice_number: str,
    invoice_amount: int,
    category: str,
    amount: int | None = None,
) -> Redemption:
    if category not in CATEGORIES:
        raise InvalidInput(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}", field="category")
    if not 0 < invoice_amount <= MAX_INVOICE_FEN:
        raise InvalidInput("invoice_amount must be a positive amount in fen", field="invoice_amount")
    if not invoice_number.strip():
        raise InvalidInput("invoice_number is required", field="invoice_number")
    with ctx.read() as s:
        provider = s.get(Participant, provider_id)
        enterprise = s.get(Participant, enterprise_id)
        programme = s.get(Programme, programme_id)
        allowed = s.get(ProgrammeProvider, (programme_id, provider_id)) is not None
        related = s.get(RelatedPartyRow, (enterprise_id, provider_id)) is not None
    if enterprise is None or enterprise.kind != "enterprise":
        raise NotFound("enterprise", enterprise_id)
    if programme is None:
        raise NotFound("programme", programme_id)
    assert provider is not None
    for party in (provider, enterprise):
        if party.frozen:
            raise AccountFrozen(f"{party.kind} {party.id} is frozen", participant_id=party.id)
    if not allowed:
        raise ProviderNotInProgramme(f"provider {provider_id} is not approved in programme {programme_id}")
    if not programme.categories >> CATEGORIES[category] & 1:
        raise CategoryNotAllowed(f"{category} compute is outside programme {programme_id}'s scope")
    if related:
        raise RelatedParty("the provider is a declared related party of the enterprise: no subsidy")
    digest = invoice_hash(invoice_number)
    (balance, used, paused), now = ctx.chain.call_many(
        [
            ("balanceOf", (enterprise.address, programme_id)),
            ("isInvoiceRedeemed", (bytes.fromhex(digest[2:]),)),
            ("paused", ()),
        ]
    )
    # Ratio and window never change after creation: the database copy serves; the contract checks again.
    if now < _ts(programme.valid_from):
        raise ProgrammeNotStarted(f"programme {programme_id} opens for redemption later")
    if now >= _ts(programme.valid_until):
        raise ProgrammeExpired(f"programme {programme_id} has expired: its vouchers can no longer be redeemed")
    subsidy = invoice_amount * programme.ratio_bps // 10_000
    if amount is not None and not 0 < amount <= subsidy:
        raise ExceedsSubsidy(
            f"{yuan(amount)} exceeds the subsidy share {yuan(subsidy)} of this invoice "
            f"({programme.ratio_bps / 100:g}% of {yuan(invoice_amount)})",
            max_subsidy=subsidy,
        )
    if paused:
        raise LedgerPaused("the ledger is paused by its supervisors: no redemptions until it resumes")
    if used:
        raise InvoiceAlreadyRedeemed(f"invoice {invoice_number} was already subsidised")
    amount = min(subsidy, balance) if amount is None else amount
    if amount <= 0 or amount > balance:
        raise InsufficientBalance(f"the enterprise holds {yuan(balance)} of programme {programme_id}", balance=balance)
    row = Redemption(
        provider_id=provider_id,
        enterprise_id=enterprise_id,
        programme_id=programme_id,
        invoice_number=invoice_number.strip(),
        invoice_hash=digest,
        invoice_amount=invoice_amount,
        category=CATEGORIES[category],
        amount=amount,
    )
    with ctx.write() as s:
        s.add(row)
        s.flush()
        s.add(InvoiceClaim(invoice_hash=digest, redemption_id=row.id))
        try:
            s.commit()
        except IntegrityError:
            raise InvoiceAlreadyRedeemed(f"invoice {invoice_number} already has a claim") from None
    return row


def get(ctx: Context, redemption_id: int) -> Redemption:
    with ctx.read() as s:
        row = s.get(Redemption, redemption_id)
    if row is None:
        raise NotFound("redemption", redemption_id)
    return row


def list_for(
    ctx: Context,
    *,
    provider_id: int | None = None,
    enterprise_id: int | None = None,
    status: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> list[Redemption]:
    with ctx.read() as s:
        q = select(Redemption).order_by(col(Redemption.id)).offset(offset).limit(limit)
        if provider_id is not None:
            q = q.where(Redemption.provider_id == provider_id)
        if enterprise_id is not None:
            q = q.where(Redemption.enterprise_id == enterprise_id)
        if status is not None:
            q = q.where(Redemption.status == status)
        return list(s.exec(q).all())


def refuse(ctx: Context, *, redemption_id: int, reason: str) -> Redemption:
    with ctx.write() as s:
        taken = s.exec(
            update(Redemption)
            .where(col(Redemption.id) == redemption_id, Redemption.status == "pending")  # type: ignore[call-overload]
            .values(status="refused", error_code="refused_by_enterprise", error_message=reason, updated_at=utcnow())
        ).rowcount
        if taken != 1:
            raise InvalidState(f"redemption {redemption_id} is not pending")
        claim_row = s.exec(select(InvoiceClaim).where(InvoiceClaim.redemption_id == redemption_id)).first()
        if claim_row is not None:
            s.delete(claim_row)
        s.commit()
    return get(ctx, redemption_id)


def confirm(ctx: Context, *, redemption_id: int) -> Redemption:
    """The enterprise consents: sign, burn on chain, record the outcome. Runs at most once per claim."""
    deadline = ctx.chain.now(cached=True) + ctx.settings.consent_ttl_s
    with ctx.write() as s:
        row = s.get(Redemption, redemption_id)
        if row is None:
            raise NotFound("redemption", redemption_id)
        taken = s.exec(
            update(Redemption)
            .where(col(Redemption.id) == redemption_id, Redemption.status == "pending")  # type: ignore[call-overload]
            .values(status="submitting", updated_at=utcnow())
        ).rowcount
        if taken != 1:
            raise InvalidState(f"redemption {redemption_id} is {row.status}, not pending")
        nonce = (
            s.exec(
                update(Participant)
                .where(col(Participant.id) == row.enterprise_id)  # type: ignore[call-overload]
                .values(next_consent_nonce=Participant.next_consent_nonce + 1)
                .returning(Participant.next_consent_nonce)
            ).one()[0]
            - 1
        )
        row.consent_nonce, row.deadline = nonce, deadline
        s.add(row)
        enterprise = s.get(Participant, row.enterprise_id)
        provider = s.get(Participant, row.provider_id)
        s.commit()
    assert enterprise is not None and provider is not None
    consent = Consent(
        enterprise=enterprise.address,
        programme_id=row.programme_id,
        amount=row.amount,
        invoice_amount=row.invoice_amount,
        invoice_hash=bytes.fromhex(row.invoice_hash[2:]),
        category=row.category,
        nonce=nonce,
        deadline=deadline,
    )
    digest = consent_digest(consent, provider.address, chain_id=ctx.chain.chain_id, contract=ctx.chain.address)
    signature = ctx.keys.sign_hash(enterprise.address, digest)
    try:
        outcome = ctx.chain.send(
            provider.address,
            "redeem",
            consent.as_struct(),
            signature,
            kind="redeem",
            ref=str(redemption_id),
            gas=REDEEM_GAS,
        )
    except TransactionPending as pending:
        _record(ctx, redemption_id, tx_hash=str(pending.details.get("tx_hash")))
        raise
    except LedgerError as exc:
        finish(ctx, redemption_id=redemption_id, error=exc)
        raise
    return finish(ctx, redemption_id=redemption_id, tx_hash=outcome.tx_hash, block_number=outcome.block_number)


def _record(ctx: Context, redemption_id: int, *, tx_hash: str) -> None:
    with ctx.write() as s:
        row = s.get(Redemption, redemption_id)
        if row is not None and row.tx_hash is None:
            row.tx_hash = tx_hash
            s.add(row)
            s.commit()


def finish(
    ctx: Context,
    *,
    redemption_id: int,
    tx_hash: str | None = None,
    block_number: int | None = None,
    error: LedgerError | None = None,
) -> Redemption:
    """Final state of a submitted claim: confirmed with its block, or failed with the decoded reason."""
    with ctx.write() as s:
        row = s.get(Redemption, redemption_id)
        assert row is not None
        if row.status != "submitting":
            return row
        row.updated_at = utcnow()
        if error is None:
            row.status, row.tx_hash, row.block_number = "confirmed", tx_hash, block_number
            enterprise = s.get(Participant, row.enterprise_id)
            if enterprise is not None and enterprise.first_redemption_at is None:
                enterprise.first_redemption_at = utcnow()
                s.add(enterprise)
        else:
            row.status, row.error_code, row.error_message = "failed", error.code, error.message
            claim_row = s.get(InvoiceClaim, row.invoice_hash)
            if claim_row is not None and claim_row.redemption_id == redemption_id:
                s.delete(claim_row)
        s.add(row)
        s.commit()
        return row
