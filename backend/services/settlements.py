"""Settlement (兑付): a provider's confirmed redemptions of a period, not yet in a live batch, become a batch;
finance approves it (its digest is anchored on chain) or returns it (its redemptions are free again).

The batch's canonical document is built once, when it is submitted, and stored: the JSON export serves exactly
those bytes and the digest anchored on chain is their keccak256, so anyone holding the export can check it
against the chain (`anchoredAt(digest)`). Canonical means sorted keys, no insignificant whitespace, UTF-8,
integers for every amount (fen) and nothing that changes later: approval adds the anchor beside the document,
never inside it (RFC 8785 serialises this document the same way: its keys are ASCII, its numbers integers).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Table, delete, exists, insert, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from backend.chain.txtypes import Call, StoredTx, TxOutcome
from backend.errors import (
    AccountFrozen,
    ChainReverted,
    InvalidInput,
    InvalidState,
    LedgerError,
    SettlementAlreadyAnchored,
    SettlementAlreadyApproved,
    SettlementAlreadyReturned,
    SettlementApprovalInProgress,
    SettlementPeriodEmpty,
    SettlementRedemptionsTaken,
)
from backend.models import Participant, Redemption, SettlementBatch, SettlementClaim, SettlementLine, utcnow
from backend.models.states import TxKind
from backend.services import participants, settlement_document
from backend.services.context import Context
from backend.services.finished import Finished

SETTLEMENT_TAG = b"settlement".ljust(32, b"\0")  # the `kind` argument of the contract's anchor()
CREATE_ATTEMPTS = 3
_BATCHES: Table = SettlementBatch.__table__  # type: ignore[attr-defined]
_SUMMARY = [c for c in _BATCHES.c if c.name != "document"]  # listings leave the (large) document out


def create(
    ctx: Context, *, provider_id: int, period_from: datetime, period_until: datetime, created_by_role: str
) -> SettlementBatch:
    """Takes the provider's confirmed redemptions that are in no live batch and whose block time falls in
    [period_from, period_until) (the chain's clock, the one the contract judges windows by; the database's
    `updated_at` is when the service heard of the receipt, possibly much later). Seconds are rounded up."""
    start, end = settlement_document.seconds(period_from), settlement_document.seconds(period_until)
    if end <= start:
        raise InvalidInput("period_until must be after period_from", field="period_until")
    provider = participants.get(ctx, provider_id, kind="provider")
    if provider.frozen:
        raise AccountFrozen(f"provider {provider_id} is frozen: its settlements wait until it is unfrozen")
    first, last = _block_range(ctx, start, end)
    for _ in range(CREATE_ATTEMPTS):
        try:
            return _create_once(ctx, provider, start, end, first, last, created_by_role)
        except IntegrityError:  # a concurrent batch took some of the same redemptions first: select again
            continue
    raise SettlementRedemptionsTaken("other batches keep taking the same redemptions; try again")


def _create_once(
    ctx: Context, provider: Participant, start: int, end: int, first: int, last: int | None, role: str
) -> SettlementBatch:
    taken = exists().where(col(SettlementClaim.redemption_id) == col(Redemption.id))
    q = (
        select(Redemption, Participant)
        .join(Participant, col(Participant.id) == col(Redemption.enterprise_id))
        .where(Redemption.provider_id == provider.id, Redemption.status == "confirmed", ~taken)
        .where(col(Redemption.block_number) >= first)
        .order_by(col(Redemption.id))
    )
    if last is not None:
        q = q.where(col(Redemption.block_number) < last)
    with ctx.write() as s:
        rows = s.exec(q).all()
        if not rows:
            raise SettlementPeriodEmpty(
                f"provider {provider.id} has no confirmed, unsettled redemptions confirmed between "
                f"{settlement_document.iso(start)} and {settlement_document.iso(end)}",
                provider_id=provider.id,
            )
        lines = [settlement_document.line(r, enterprise) for r, enterprise in rows]
        batch = SettlementBatch(
            provider_id=provider.id,  # type: ignore[arg-type]  # read from the database: it has its id
            period_from=datetime.fromtimestamp(start, UTC),
            period_until=datetime.fromtimestamp(end, UTC),
            line_count=len(lines),
            subsidy_total=sum(line["subsidy_amount"] for line in lines),
            invoice_total=sum(line["invoice_amount"] for line in lines),
            created_by_role=role,
        )
        s.add(batch)
        s.flush()  # the batch's id goes into its document
        assert batch.id is not None
        body = settlement_document.canonical_json(
            settlement_document.document(
                chain_id=ctx.chain.chain_id, contract=ctx.chain.address, batch=batch, provider=provider, lines=lines
            )
        )
        batch.document, batch.digest = body.decode(), settlement_document.digest_of(body)
        conn = s.connection()
        conn.execute(insert(SettlementLine), [{"redemption_id": r.id, "batch_id": batch.id} for r, _ in rows])
        conn.execute(insert(SettlementClaim), [{"redemption_id": r.id, "batch_id": batch.id} for r, _ in rows])
        s.add(batch)
        s.commit()
    return batch


def get(ctx: Context, batch_id: int) -> SettlementBatch:
    return ctx.fetch(SettlementBatch, batch_id, "settlement")


def list_for(
    ctx: Context, *, provider_id: int | None = None, status: str | None = None, offset: int = 0, limit: int = 100
) -> list[SettlementBatch]:
    """Newest first, without their documents."""
    q = select(*_SUMMARY).order_by(_BATCHES.c.id.desc()).offset(offset).limit(limit)
    if provider_id is not None:
        q = q.where(_BATCHES.c.provider_id == provider_id)
    if status is not None:
        q = q.where(_BATCHES.c.status == status)
    with ctx.read() as s:
        rows = s.connection().execute(q).all()
    return [SettlementBatch.model_validate(row._asdict()) for row in rows]


def approve(ctx: Context, *, batch_id: int) -> Finished[SettlementBatch]:
    """Finance approves: the finance operator anchors the digest on chain and the batch records the transaction.

    As with redemptions, the batch moves to "approving" in the same database transaction that stores the signed
    anchoring transaction; a receipt that comes after the request gave up is applied by the monitor (`finish`).
    """
    batch = get(ctx, batch_id)
    if batch.status != "submitted":
        raise _state_error(batch)
    provider = participants.get(ctx, batch.provider_id)
    if provider.frozen:
        raise AccountFrozen(f"provider {provider.id} is frozen: its settlements wait until it is unfrozen")
    sender = ctx.operators["finance"]
    data = ctx.chain.encode("anchor", bytes.fromhex(batch.digest[2:]), SETTLEMENT_TAG)
    try:
        gas = ctx.pipeline.estimate(sender, data)
    except ChainReverted as exc:
        if exc.details.get("contract_error") == "HashAlreadyAnchored":
            raise SettlementAlreadyAnchored(f"the digest of settlement {batch_id} is already on chain") from None
        raise

    def record(conn: Connection) -> Call:
        moved = conn.execute(
            update(_BATCHES)
            .where(_BATCHES.c.id == batch_id, _BATCHES.c.status == "submitted")
            .values(status="approving", error_code=None, error_message=None, updated_at=utcnow())
        ).rowcount
        if moved != 1:
            raise _state_error(get(ctx, batch_id))
        return Call(TxKind.SETTLEMENT_ANCHOR, data, str(batch_id), gas, link=_name_anchor(batch_id))

    submitted = ctx.pipeline.submit_sync(sender, record)  # a revert raises, the batch back to submitted
    return Finished(get(ctx, batch_id), pending=True) if submitted.pending else Finished(submitted.value)


def _name_anchor(batch_id: int) -> Callable[[Connection, str], None]:
    def link(conn: Connection, tx_hash: str) -> None:
        conn.execute(update(_BATCHES).where(_BATCHES.c.id == batch_id).values(anchor_tx_hash=tx_hash))

    return link


def anchored(conn: Connection, tx: StoredTx, result: TxOutcome | LedgerError) -> SettlementBatch:
    """The anchoring's completion handler (the request, the monitor, a retry): the batch's final state."""
    return _finish(conn, int(tx.ref), result)


def _finish(conn: Connection, batch_id: int, result: TxOutcome | LedgerError) -> SettlementBatch:
    """Approved with the anchor's block, or back to submitted with the reason (finance may approve again)."""
    if isinstance(result, TxOutcome):
        changes = dict(status="approved", anchor_tx_hash=result.tx_hash, anchor_block=result.block_number)
        changes |= dict(decided_at=utcnow())
    else:
        changes = dict(status="submitted", anchor_tx_hash=None, error_code=result.code, error_message=result.message)
    row = conn.execute(
        update(_BATCHES)
        .where(_BATCHES.c.id == batch_id, _BATCHES.c.status == "approving")
        .values(**changes, updated_at=utcnow())
        .returning(*_BATCHES.c)
    ).first()
    if row is None:  # finished already (by the request or the monitor): report it as it stands
        row = conn.execute(select(*_BATCHES.c).where(_BATCHES.c.id == batch_id)).one()
    return SettlementBatch.model_validate(row._asdict())


def return_batch(ctx: Context, *, batch_id: int, reason: str) -> SettlementBatch:
    """Finance sends a submitted batch back: its redemptions may enter a later batch; its lines stay on record."""
    if not reason.strip():
        raise InvalidInput("a reason is required", field="reason")
    with ctx.write() as s:
        conn = s.connection()
        moved = conn.execute(
            update(_BATCHES)
            .where(_BATCHES.c.id == batch_id, _BATCHES.c.status == "submitted")
            .values(status="returned", return_reason=reason.strip(), decided_at=utcnow(), updated_at=utcnow())
        ).rowcount
        if moved != 1:
            raise _state_error(get(ctx, batch_id))
        conn.execute(delete(SettlementClaim).where(col(SettlementClaim.batch_id) == batch_id))
        s.commit()
    return get(ctx, batch_id)


_STATE_ERRORS: dict[str, tuple[type[InvalidState], str]] = {
    "approved": (SettlementAlreadyApproved, "is already approved (anchored in {b.anchor_tx_hash})"),
    "returned": (SettlementAlreadyReturned, "was returned ({b.return_reason}); submit a new batch"),
    "approving": (SettlementApprovalInProgress, "is being anchored on chain (transaction {b.anchor_tx_hash})"),
}


def _state_error(b: SettlementBatch) -> InvalidState:
    cls, text = _STATE_ERRORS.get(b.status, (InvalidState, "is {b.status}"))
    return cls(f"settlement {b.id} " + text.format(b=b), status=b.status)


def _block_range(ctx: Context, start: int, end: int) -> tuple[int, int | None]:
    """Blocks [first, last) whose timestamps fall in [start, end); `last` None when the period is still open.
    A binary search on block timestamps (never decreasing along a chain): a few dozen reads, whatever the volume."""
    latest = ctx.chain.rpc.block_number()
    first = _first_block_at(ctx, start, latest)
    last = None if _block_time(ctx, latest) < end else _first_block_at(ctx, end, latest)
    return first, last


def _first_block_at(ctx: Context, timestamp: int, latest: int) -> int:
    lo, hi = 0, latest + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _block_time(ctx, mid) >= timestamp:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _block_time(ctx: Context, number: int) -> int:
    return int(ctx.chain.rpc.call("eth_getBlockByNumber", [hex(number), False])["timestamp"], 16)
