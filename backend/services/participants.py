"""Enterprises and providers: registration with a managed key on chain, freezing, related parties."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from backend import credit_code
from backend.chain.hashing import keccak
from backend.chain.ledger import ENTERPRISE, PROVIDER
from backend.errors import AlreadyExists, InvalidInput, InvalidState, LedgerError, NotFound
from backend.faults import crash_point
from backend.models import Participant, RelatedParty, unix_time
from backend.services import resume
from backend.services.context import Context

CATEGORIES = {"intelligent": 0, "general": 1, "supercomputing": 2}
SIZES = ("micro", "small", "medium")


def categories_mask(names: list[str]) -> int:
    unknown = [n for n in names if n not in CATEGORIES]
    if unknown:
        raise InvalidInput(f"unknown compute categories {unknown}; known: {', '.join(CATEGORIES)}", field="categories")
    return sum(1 << CATEGORIES[n] for n in set(names))


def category_names(mask: int) -> list[str]:
    return [n for n, bit in CATEGORIES.items() if mask >> bit & 1]


def register(
    ctx: Context,
    *,
    kind: str,
    name: str,
    credit: str,
    region_code: str = "",
    industry: str = "",
    size: str = "",
    categories: list[str] | None = None,
) -> Participant:
    credit = credit.strip().upper()
    if (why := credit_code.problem(credit)) is not None:
        raise InvalidInput(why, field="credit_code")
    if kind == "enterprise" and size and size not in SIZES:
        raise InvalidInput(f"size must be one of {', '.join(SIZES)}", field="size")
    mask = categories_mask(categories or []) if kind == "provider" else 0
    with ctx.read() as s:
        existing = s.exec(select(Participant).where(Participant.credit_code == credit)).first()
    if existing is not None:
        since = resume.resumed_since()
        if since is not None and unix_time(existing.created_at) >= unix_time(since):
            return _finish_registration(ctx, existing)  # a dead attempt of this very request made it
        raise AlreadyExists(f"a participant with credit code {credit} is already registered")
    address = ctx.keys.create("participant")
    ctx.chain.permit(address)
    row = Participant(
        kind=kind,
        name=name,
        credit_code=credit,
        region_code=region_code,
        industry=industry,
        size=size,
        categories=mask,
        address=address,
    )
    admin = ctx.operators["admin"]
    on_chain_kind = ENTERPRISE if kind == "enterprise" else PROVIDER
    data = ctx.chain.encode("registerParticipant", address, on_chain_kind, keccak(credit))
    gas = ctx.pipeline.estimate(admin, ctx.chain.address, data)  # a refusal is decoded before anything is written
    ctx.pipeline.prepare(admin)
    # The participant and its signed registration are stored together: a crash leaves both or neither, and
    # the monitor sends a stored registration the request could not.
    with ctx.write() as s:
        s.add(row)
        try:
            s.flush()
        except IntegrityError:
            raise AlreadyExists(f"a participant with credit code {credit} is already registered") from None
        stored = ctx.pipeline.store(s, admin, ctx.chain.address, data, gas=gas, kind="register", ref=str(row.id))
        s.commit()
    crash_point("pipeline.stored:register")
    result = ctx.pipeline.outcome(stored, ctx.pipeline.send_and_wait(stored))  # TransactionPending: tracked
    with ctx.write() as s:
        ctx.pipeline.record(s, stored, result)
        s.commit()
    if isinstance(result, LedgerError):
        forget(ctx, participant_id=int(row.id or 0))  # the chain refused: the record must not outlive it
        raise result
    return row


def _finish_registration(ctx: Context, row: Participant) -> Participant:
    tx = ctx.pipeline.latest("register", str(row.id))
    if tx is not None and tx.status == "signed":
        result = ctx.pipeline.settle(tx.tx_hash)  # TransactionPending: the monitor finishes it
        if isinstance(result, LedgerError):
            forget(ctx, participant_id=int(row.id or 0))
            raise result
    return row


def forget(ctx: Context, *, participant_id: int) -> None:
    with ctx.write() as s:
        row = s.get(Participant, participant_id)
        if row is not None:
            s.delete(row)
            s.commit()


def get(ctx: Context, participant_id: int, *, kind: str | None = None) -> Participant:
    with ctx.read() as s:
        row = s.get(Participant, participant_id)
    if row is None or (kind is not None and row.kind != kind):
        raise NotFound(kind or "participant", participant_id)
    return row


def list_all(ctx: Context, *, kind: str | None = None, offset: int = 0, limit: int = 100) -> list[Participant]:
    with ctx.read() as s:
        q = select(Participant).order_by(col(Participant.id)).offset(offset).limit(limit)
        if kind:
            q = q.where(Participant.kind == kind)
        return list(s.exec(q).all())


def set_frozen(ctx: Context, *, participant_id: int, frozen: bool, reason_code: int = 0) -> Participant:
    row = get(ctx, participant_id)
    if row.frozen == frozen:
        raise InvalidState(f"participant {participant_id} is already {'frozen' if frozen else 'active'}")
    args = (row.address, reason_code) if frozen else (row.address,)
    ctx.chain.send(
        ctx.operators["supervisor"],
        "freeze" if frozen else "unfreeze",
        *args,
        kind="freeze" if frozen else "unfreeze",
        ref=str(participant_id),
    )
    return store_frozen(ctx, participant_id=participant_id, frozen=frozen)


def store_frozen(ctx: Context, *, participant_id: int, frozen: bool) -> Participant:
    """Records a freeze the chain has made (by the request, or by the monitor for a late receipt)."""
    with ctx.write() as s:
        db_row = s.get(Participant, participant_id)
        if db_row is None:
            raise NotFound("participant", participant_id)
        db_row.frozen = frozen
        s.add(db_row)
        s.commit()
        return db_row


def declare_related(ctx: Context, *, enterprise_id: int, provider_id: int, related: bool) -> None:
    enterprise = get(ctx, enterprise_id, kind="enterprise")
    provider = get(ctx, provider_id, kind="provider")
    ctx.chain.send(
        ctx.operators["admin"],
        "setRelatedParty",
        enterprise.address,
        provider.address,
        related,
        kind="related_party",
        ref=f"{enterprise_id}:{provider_id}",
    )
    store_related(ctx, enterprise_id=enterprise_id, provider_id=provider_id, related=related)


def store_related(ctx: Context, *, enterprise_id: int, provider_id: int, related: bool) -> None:
    with ctx.write() as s:
        existing = s.get(RelatedParty, (enterprise_id, provider_id))
        if related and existing is None:
            s.add(RelatedParty(enterprise_id=enterprise_id, provider_id=provider_id))
        elif not related and existing is not None:
            s.delete(existing)
        s.commit()


def is_related(ctx: Context, *, enterprise_id: int, provider_id: int) -> bool:
    with ctx.read() as s:
        return s.get(RelatedParty, (enterprise_id, provider_id)) is not None
