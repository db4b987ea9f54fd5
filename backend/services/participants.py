"""Enterprises and providers: registration with a managed key on chain, freezing, related parties."""

from __future__ import annotations

from sqlalchemy import Table, delete, insert, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from backend import credit_code
from backend.chain import txstore
from backend.chain.hashing import keccak
from backend.chain.ledger import ENTERPRISE, PROVIDER
from backend.chain.pipeline import stored_of
from backend.chain.txtypes import Call, StoredTx, TxOutcome
from backend.errors import AlreadyExists, InvalidInput, InvalidState, LedgerError, NotFound, TransactionPending
from backend.models import Participant, RelatedParty, unix_time, utcnow
from backend.models.states import TxKind, TxStatus
from backend.services import resume
from backend.services.context import Context

CATEGORIES = {"intelligent": 0, "general": 1, "supercomputing": 2}
SIZES = ("micro", "small", "medium")
_PARTICIPANTS: Table = Participant.__table__  # type: ignore[attr-defined]
_RELATED: Table = RelatedParty.__table__  # type: ignore[attr-defined]


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
    values = dict(kind=kind, name=name, credit_code=credit, region_code=region_code, industry=industry, size=size,
                  categories=mask, address=address, created_at=utcnow())  # fmt: skip
    admin = ctx.operators["admin"]
    on_chain_kind = ENTERPRISE if kind == "enterprise" else PROVIDER
    data = ctx.chain.encode("registerParticipant", address, on_chain_kind, keccak(credit))
    gas = ctx.pipeline.estimate(admin, data)  # a refusal is decoded before anything is written

    # The participant and its signed registration are stored together: a crash leaves both or neither, and
    # the monitor sends a stored registration the request could not.
    def record(conn: Connection) -> Call:
        try:
            with conn.begin_nested():
                new_id = conn.execute(insert(_PARTICIPANTS).values(**values).returning(_PARTICIPANTS.c.id)).scalar()
        except IntegrityError:
            raise AlreadyExists(f"a participant with credit code {credit} is already registered") from None
        return Call(TxKind.REGISTER, data, str(new_id), gas)

    submitted = ctx.pipeline.submit_sync(admin, record)  # a refusal raises, the participant forgotten
    row = _by_address(ctx, address)
    if submitted.pending:
        raise TransactionPending(f"participant {row.id} is stored; its registration {submitted.tx_hash} is not yet in "
                                 "a block and will be finished", tx_hash=submitted.tx_hash)  # fmt: skip
    return row


def _by_address(ctx: Context, address: str) -> Participant:
    with ctx.read() as s:
        return s.exec(select(Participant).where(Participant.address == address)).one()


def _finish_registration(ctx: Context, row: Participant) -> Participant:
    tx = txstore.latest(ctx.engine, TxKind.REGISTER, str(row.id))
    if tx is not None and tx.status == TxStatus.SIGNED:
        submitted = ctx.pipeline.follow_sync(stored_of(tx))  # a refusal raises, the participant forgotten
        if submitted.pending:
            raise TransactionPending(f"registration {tx.tx_hash} is not yet in a block", tx_hash=tx.tx_hash)
    return row


def registration_refused(conn: Connection, tx: StoredTx, _error: LedgerError) -> None:
    """The chain refused the registration (the completion handler's failure): the record must not outlive it."""
    conn.execute(delete(_PARTICIPANTS).where(_PARTICIPANTS.c.id == int(tx.ref)))


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
    kind = TxKind.FREEZE if frozen else TxKind.UNFREEZE
    ctx.chain.send(ctx.operators["supervisor"], kind.value, *args, kind=kind, ref=str(participant_id))
    return get(ctx, participant_id)  # recorded by the completion handler, `store_frozen`


def store_frozen(conn: Connection, tx: StoredTx, _outcome: TxOutcome) -> None:
    """Records a freeze or unfreeze the chain has made (the completion handler of both)."""
    frozen = tx.kind == TxKind.FREEZE
    conn.execute(update(_PARTICIPANTS).where(_PARTICIPANTS.c.id == int(tx.ref)).values(frozen=frozen))


def declare_related(ctx: Context, *, enterprise_id: int, provider_id: int, related: bool) -> None:
    enterprise = get(ctx, enterprise_id, kind="enterprise")
    provider = get(ctx, provider_id, kind="provider")
    ctx.chain.send(ctx.operators["admin"], "setRelatedParty", enterprise.address, provider.address, related,
                   kind=TxKind.RELATED_PARTY, ref=f"{enterprise_id}:{provider_id}")  # fmt: skip


def store_related(conn: Connection, tx: StoredTx, outcome: TxOutcome) -> None:
    """Records a related-party declaration from its event (the completion handler)."""
    related = next(ev.args["related"] for ev in outcome.events() if ev.name == "RelatedPartySet")
    enterprise_id, provider_id = (int(i) for i in tx.ref.split(":"))
    key = (_RELATED.c.enterprise_id == enterprise_id) & (_RELATED.c.provider_id == provider_id)
    conn.execute(delete(_RELATED).where(key))
    if related:
        conn.execute(insert(_RELATED).values(enterprise_id=enterprise_id, provider_id=provider_id))


def is_related(ctx: Context, *, enterprise_id: int, provider_id: int) -> bool:
    with ctx.read() as s:
        return s.get(RelatedParty, (enterprise_id, provider_id)) is not None
