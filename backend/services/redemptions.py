"""Redemption: a provider claims against a paid invoice; the enterprise confirms (its managed key signs the
EIP-712 consent) or refuses; the provider's managed key submits the burn. One live claim per invoice and provider
(invoice_claims); a claim not confirmed in time expires."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import Table, bindparam, update
from sqlalchemy.engine import Connection
from sqlmodel import col, select

from backend.chain import txstore
from backend.chain.consent import Redemption as Consent
from backend.chain.consent import consent_digest, redeem_arguments
from backend.chain.pipeline import stored_of
from backend.chain.txtypes import Call, StoredTx, Submitted, TxOutcome
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
)
from backend.faults import crash_point
from backend.invoices import canonical, invoice_hash
from backend.models import Participant, Redemption, unix_time, utcnow
from backend.models.states import RedemptionStatus, TxKind
from backend.money import yuan
from backend.services import claim_facts, invoice_claims, resume
from backend.services.context import Context
from backend.services.finished import Finished
from backend.services.participants import CATEGORIES

MAX_INVOICE_FEN = 10**15  # ¥10 trillion: anything larger is a typo, not an invoice
# A redeem burns about 93k-110k gas; a fixed limit skips the dry run on the hot path (gas is free here, and a
# refusal the claim checks did not foresee is mined, replayed and decoded like any other).
REDEEM_GAS = 200_000
# Plain tables for Core statements on the redemption hot path (the ORM's unit of work cost 3x as much).
_REDEMPTIONS: Table = Redemption.__table__  # type: ignore[attr-defined]
_PARTICIPANTS: Table = Participant.__table__  # type: ignore[attr-defined]
_PARTY = _PARTICIPANTS.alias()
# The claim's two addresses, status and age, in one statement (the confirm hot path).
_ADDRESSES = select(
    select(_PARTY.c.address).where(_PARTY.c.id == _REDEMPTIONS.c.enterprise_id).scalar_subquery(),
    select(_PARTY.c.address).where(_PARTY.c.id == _REDEMPTIONS.c.provider_id).scalar_subquery(),
    _REDEMPTIONS.c.status,
    _REDEMPTIONS.c.created_at,
).where(_REDEMPTIONS.c.id == bindparam("redemption_id"), _REDEMPTIONS.c.enterprise_id == bindparam("enterprise_id"))
_NOT_COVERED = "the enterprise's vouchers no longer covered the claim when it was confirmed"


async def claim(
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
    number = canonical(invoice_number)  # InvalidInvoiceNumber: look-alike characters would make a second hash
    digest = invoice_hash(number)
    ids = {"provider_id": provider_id, "enterprise_id": enterprise_id, "programme_id": programme_id}
    facts = await ctx.first_async(claim_facts.QUERY, ids)
    if facts is None or facts.enterprise_kind != "enterprise":
        raise NotFound("enterprise", enterprise_id)
    if facts.ratio_bps is None:
        raise NotFound("programme", programme_id)
    for kind, party_id, frozen in (("provider", provider_id, facts.provider_frozen),
                                   ("enterprise", enterprise_id, facts.enterprise_frozen)):  # fmt: skip
        if frozen:
            raise AccountFrozen(f"{kind} {party_id} is frozen", participant_id=party_id)
    programme, allowed, related = facts, facts.allowed, facts.related
    if not allowed:
        raise ProviderNotInProgramme(f"provider {provider_id} is not approved in programme {programme_id}")
    if not programme.categories >> CATEGORIES[category] & 1:
        raise CategoryNotAllowed(f"{category} compute is outside programme {programme_id}'s scope")
    if related:
        raise RelatedParty("the provider is a declared related party of the enterprise: no subsidy")
    reads = [
        ("balanceOf", (facts.enterprise_address, programme_id)),
        ("isInvoiceRedeemed", (bytes.fromhex(digest[2:]),)),
        ("paused", ()),
    ]
    (balance, used, paused), now = await asyncio.to_thread(ctx.chain.call_many, reads)
    # Ratio and window never change after creation: the database copy serves; the contract checks again.
    if now < unix_time(programme.valid_from):
        raise ProgrammeNotStarted(f"programme {programme_id} opens for redemption later")
    if now >= unix_time(programme.valid_until):
        raise ProgrammeExpired(f"programme {programme_id} has expired: its vouchers can no longer be redeemed")
    subsidy = invoice_amount * programme.ratio_bps // 10_000
    amount = subsidy if amount is None else amount
    if not 0 < amount <= subsidy:
        raise ExceedsSubsidy(
            f"{yuan(amount)} exceeds the subsidy share {yuan(subsidy)} of this invoice "
            f"({programme.ratio_bps / 100:g}% of {yuan(invoice_amount)})",
            max_subsidy=subsidy,
        )
    if paused:
        raise LedgerPaused("the ledger is paused by its supervisors: no redemptions until it resumes")
    if used:
        raise InvoiceAlreadyRedeemed(f"invoice {number} was already subsidised")
    if amount > balance:  # the provider learns no more than that: the figure is the enterprise's own business
        raise InsufficientBalance(f"the enterprise's vouchers of programme {programme_id} do not cover {yuan(amount)}")
    stamp = ctx.clock()
    values = {
        "provider_id": provider_id,
        "enterprise_id": enterprise_id,
        "programme_id": programme_id,
        "invoice_number": number,
        "invoice_hash": digest,
        "invoice_amount": invoice_amount,
        "category": CATEGORIES[category],
        "amount": amount,
        "created_at": stamp,
        "updated_at": stamp,
    }
    row = await invoice_claims.store(ctx, values)
    if row is None:
        if (mine := await asyncio.to_thread(_resumed_claim, ctx, digest, provider_id)) is not None:
            return mine
        raise InvoiceAlreadyRedeemed(f"invoice {number} already has a claim of yours, pending or being confirmed")
    crash_point("claim.stored")
    return Redemption.model_validate(row._asdict())


def _resumed_claim(ctx: Context, digest: str, provider_id: int) -> Redemption | None:
    """The claim a dead attempt of this very request stored, when this request takes over from it."""
    since = resume.resumed_since()
    if since is None:
        return None
    row = invoice_claims.held_by(ctx, digest, provider_id)
    if row is None or unix_time(row.created_at) < unix_time(since):
        return None
    return row


def get(ctx: Context, redemption_id: int) -> Redemption:
    return ctx.fetch(Redemption, redemption_id, "redemption")


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
    current = get(ctx, redemption_id)
    invoice_claims.ensure_live(ctx, redemption_id, current.status, current.created_at)
    with ctx.write() as s:
        conn = s.connection()
        row = conn.execute(
            update(_REDEMPTIONS)
            .where(_REDEMPTIONS.c.id == redemption_id, _REDEMPTIONS.c.status == "pending")
            .values(status="refused", error_code="refused_by_enterprise", error_message=reason, updated_at=utcnow())
            .returning(_REDEMPTIONS.c.invoice_hash, _REDEMPTIONS.c.provider_id)
        ).first()
        if row is None:
            raise InvalidState(f"redemption {redemption_id} is not pending")
        invoice_claims.release(conn, row.invoice_hash, row.provider_id, redemption_id)
        s.commit()
    return get(ctx, redemption_id)


async def confirm(ctx: Context, *, redemption_id: int, enterprise_id: int) -> Finished[Redemption]:
    """The enterprise consents: its key signs, the provider's key sends the burn, the outcome is recorded.

    The claim moves to "submitting" with its consent nonce in the database transaction that stores the signed burn
    (so a crash after it leaves something the monitor can finish); the burn's completion handler records the
    outcome. A revert raises its decoded error once the claim is marked failed.
    """
    found = await ctx.first_async(_ADDRESSES, {"redemption_id": redemption_id, "enterprise_id": enterprise_id})
    if found is None:  # or not this enterprise's: what is not theirs does not exist for them
        raise NotFound("redemption", redemption_id)
    if resume.resumed_since() is not None and found.status != RedemptionStatus.PENDING:
        return await _resume_confirm(ctx, redemption_id)
    if found.status != RedemptionStatus.PENDING or invoice_claims.expired(ctx, found.created_at):
        await asyncio.to_thread(invoice_claims.ensure_live, ctx, redemption_id, found.status, found.created_at)
    enterprise, provider = str(found[0]), str(found[1])
    if not ctx.keys.loaded(enterprise):
        await asyncio.to_thread(ctx.keys.load, enterprise)
    now = ctx.chain.clock() if ctx.chain.clock else None  # the follower's view of the head, if fresh
    deadline = (now if now is not None else await asyncio.to_thread(ctx.chain.now)) + ctx.settings.consent_ttl_s

    def record(conn: Connection) -> Call:
        row = conn.execute(
            update(_REDEMPTIONS)
            .where(_REDEMPTIONS.c.id == redemption_id, _REDEMPTIONS.c.status == RedemptionStatus.PENDING)
            .values(status=RedemptionStatus.SUBMITTING, deadline=deadline, updated_at=utcnow())
            .returning(*_REDEMPTIONS.c)
        ).first()
        if row is None:
            status = conn.execute(select(_REDEMPTIONS.c.status).where(_REDEMPTIONS.c.id == redemption_id)).scalar()
            raise InvalidState(f"redemption {redemption_id} is {status}, not pending")
        nonce = conn.execute(
            update(_PARTICIPANTS)
            .where(_PARTICIPANTS.c.id == row.enterprise_id)
            .values(next_consent_nonce=_PARTICIPANTS.c.next_consent_nonce + 1)
            .returning(_PARTICIPANTS.c.next_consent_nonce)
        ).one()[0] - 1  # fmt: skip
        consent = Consent(
            enterprise=enterprise,
            programme_id=row.programme_id,
            amount=row.amount,
            invoice_amount=row.invoice_amount,
            invoice_hash=bytes.fromhex(row.invoice_hash[2:]),
            category=row.category,
            nonce=nonce,
            deadline=deadline,
        )
        digest = consent_digest(consent, provider, chain_id=ctx.chain.chain_id, contract=ctx.chain.address)
        data = ctx.chain.codec.encode_raw("redeem", redeem_arguments(consent, ctx.keys.sign_hash(enterprise, digest)))
        crash_point("confirm.signed")
        conn.execute(update(_REDEMPTIONS).where(_REDEMPTIONS.c.id == redemption_id).values(consent_nonce=nonce))
        return Call(TxKind.REDEEM, data, str(redemption_id), REDEEM_GAS, link=_name_tx(redemption_id))

    submitted = await ctx.pipeline.submit(provider, record)  # a revert raises its error, the claim marked failed
    return await _finished(ctx, redemption_id, submitted)


async def _finished(ctx: Context, redemption_id: int, submitted: Submitted) -> Finished[Redemption]:
    if submitted.pending:  # sent, not mined in time: the monitor finishes it
        return Finished(await asyncio.to_thread(get, ctx, redemption_id), pending=True)
    crash_point("confirm.recorded")
    return Finished(submitted.value)


def _name_tx(redemption_id: int) -> Callable[[Connection, str], None]:
    def link(conn: Connection, tx_hash: str) -> None:
        conn.execute(update(_REDEMPTIONS).where(_REDEMPTIONS.c.id == redemption_id).values(tx_hash=tx_hash))

    return link


async def _resume_confirm(ctx: Context, redemption_id: int) -> Finished[Redemption]:
    """A dead attempt already moved the claim on: finish its stored transaction, never send another."""
    current = await asyncio.to_thread(get, ctx, redemption_id)
    if current.status == RedemptionStatus.SUBMITTING and current.tx_hash:
        tx = await asyncio.to_thread(txstore.find, ctx.engine, current.tx_hash)
        if tx is not None:
            return await _finished(ctx, redemption_id, await ctx.pipeline.follow(stored_of(tx)))
    return Finished(current)


def redeemed(conn: Connection, tx: StoredTx, result: TxOutcome | LedgerError) -> Redemption:
    """The burn's completion handler (the request, the monitor, a retry taking over): the claim's final state."""
    return _finish(conn, int(tx.ref), result)


def _finish(conn: Connection, redemption_id: int, result: TxOutcome | LedgerError) -> Redemption:
    """Confirmed with its block, or failed with the decoded reason (and the invoice free again)."""
    if isinstance(result, TxOutcome):
        changes = {"status": RedemptionStatus.CONFIRMED, "tx_hash": result.tx_hash, "block_number": result.block_number}
    else:
        # The provider reads this row too: the enterprise's balance stays out of it (the enterprise, confirming,
        # was told the figure in its own answer).
        message = _NOT_COVERED if isinstance(result, InsufficientBalance) else result.message
        changes = {"status": RedemptionStatus.FAILED, "error_code": result.code, "error_message": message}
    row = conn.execute(
        update(Redemption)
        .where(col(Redemption.id) == redemption_id, col(Redemption.status) == RedemptionStatus.SUBMITTING)
        .values(**changes, updated_at=utcnow())
        .returning(*_REDEMPTIONS.c)
    ).first()
    if row is None:  # finished already (by the request or the monitor): report it as it stands
        current = conn.execute(select(*_REDEMPTIONS.c).where(col(Redemption.id) == redemption_id)).one()
        return Redemption.model_validate(current._asdict())
    if isinstance(result, TxOutcome):
        conn.execute(
            update(Participant)
            .where(col(Participant.id) == row.enterprise_id, col(Participant.first_redemption_at).is_(None))
            .values(first_redemption_at=utcnow())
        )
    else:
        invoice_claims.release(conn, row.invoice_hash, row.provider_id, redemption_id)
    return Redemption.model_validate(row._asdict())
