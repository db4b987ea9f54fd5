"""Applications: an enterprise applies, an issuer approves (possibly less) and the vouchers are issued on
chain, or rejects with a reason. Budget and cap are checked before any transaction."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Table, func, update
from sqlalchemy.engine import Connection
from sqlmodel import col, select

from backend.chain import txstore
from backend.chain.hashing import keccak
from backend.chain.pipeline import stored_of
from backend.chain.txtypes import StoredTx, TxOutcome
from backend.errors import (
    AccountFrozen,
    BudgetExceeded,
    CapExceeded,
    InvalidInput,
    InvalidState,
    LedgerError,
    ProgrammeExpired,
    TransactionPending,
)
from backend.faults import crash_point
from backend.models import Application, Participant, unix_time, utcnow
from backend.models.states import TxKind, TxStatus
from backend.money import yuan
from backend.services import participants, programmes, resume
from backend.services.context import Context

_APPLICATIONS: Table = Application.__table__  # type: ignore[attr-defined]


def application_ref(application_id: int) -> bytes:
    return keccak(f"application:{application_id}")


def apply(ctx: Context, *, enterprise_id: int, programme_id: int, amount: int, purpose: str) -> Application:
    enterprise = participants.get(ctx, enterprise_id, kind="enterprise")
    if enterprise.frozen:
        raise AccountFrozen("your account is frozen: applications are not accepted")
    programme = programmes.get_row(ctx, programme_id)
    if ctx.chain.now() >= unix_time(programme.valid_until):
        raise ProgrammeExpired(f"programme {programme_id} has expired: it takes no more applications")
    if amount <= 0 or amount > programme.cap_per_enterprise:
        raise InvalidInput(
            f"amount must be between 1 fen and the cap {yuan(programme.cap_per_enterprise)}", field="amount"
        )
    if (earlier := _resumed_application(ctx, enterprise_id, programme_id, amount, purpose)) is not None:
        return earlier
    row = Application(enterprise_id=enterprise_id, programme_id=programme_id, amount=amount, purpose=purpose)
    with ctx.write() as s:
        s.add(row)
        s.commit()
    crash_point("apply.stored")
    return row


def _resumed_application(
    ctx: Context, enterprise_id: int, programme_id: int, amount: int, purpose: str
) -> Application | None:
    """The application a dead attempt of this very request stored, when this request takes over from it."""
    since = resume.resumed_since()
    if since is None:
        return None
    with ctx.read() as s:
        q = select(Application).where(
            Application.enterprise_id == enterprise_id,
            Application.programme_id == programme_id,
            Application.amount == amount,
            Application.purpose == purpose,
        )
        rows = s.exec(q.order_by(col(Application.id).desc())).all()
    return next((r for r in rows if unix_time(r.created_at) >= unix_time(since)), None)


def get(ctx: Context, application_id: int) -> Application:
    return ctx.fetch(Application, application_id, "application")


def list_for(
    ctx: Context, *, enterprise_id: int | None = None, programme_id: int | None = None, status: str | None = None
) -> list[Application]:
    with ctx.read() as s:
        q = select(Application).order_by(col(Application.id))
        if enterprise_id is not None:
            q = q.where(Application.enterprise_id == enterprise_id)
        if programme_id is not None:
            q = q.where(Application.programme_id == programme_id)
        if status is not None:
            q = q.where(Application.status == status)
        return list(s.exec(q).all())


def reject(ctx: Context, *, application_id: int, reason: str) -> Application:
    if not reason.strip():
        raise InvalidInput("a rejection needs a reason the enterprise can read", field="reason")
    _claim(ctx, [application_id], to="rejected", reason=reason)
    return get(ctx, application_id)


def approve(ctx: Context, *, application_id: int, amount: int | None = None) -> Application:
    return approve_batch(ctx, approvals={application_id: amount})[0]


def approve_batch(ctx: Context, *, approvals: dict[int, int | None]) -> list[Application]:
    """Approves applications of one programme in one all-or-nothing issuance transaction."""
    if resume.resumed_since() is not None and (done := _resume_issue(ctx, list(approvals))) is not None:
        return done
    apps = [get(ctx, i) for i in approvals]
    if len({a.programme_id for a in apps}) != 1:
        raise InvalidInput("a batch approval covers applications of one programme", field="application_ids")
    undecided = [a.id for a in apps if a.status != "pending"]
    if undecided:
        raise InvalidState(f"only pending applications can be approved; {undecided} were decided already")
    amounts: dict[int, int] = {}
    for a in apps:
        assert a.id is not None  # rows read from the database have their primary key
        asked = approvals[a.id]
        amount = a.amount if asked is None else asked
        if not 0 < amount <= a.amount:
            raise InvalidInput(f"application {a.id}: approve between 1 fen and the {yuan(a.amount)} applied for")
        amounts[a.id] = amount
    pid = apps[0].programme_id
    _precheck(ctx, pid, apps, amounts)
    _claim(ctx, list(amounts), to="issuing")
    _set(ctx, list(amounts), status="issuing", amounts=amounts)  # recorded before sending: the monitor may finish
    crash_point("approve.issuing")
    with ctx.read() as s:
        addresses = {a.id: s.get(Participant, a.enterprise_id).address for a in apps}  # type: ignore[union-attr]
    ids = list(amounts)
    try:  # the completion handler, `issued`, records the outcome
        ctx.chain.send(
            ctx.operators["issuer"],
            "issueBatch",
            pid,
            [addresses[i] for i in ids],
            [amounts[i] for i in ids],
            [application_ref(i) for i in ids],
            kind=TxKind.ISSUE,
            ref=",".join(map(str, ids)),
        )
    except TransactionPending:
        raise  # stays "issuing": the monitor finishes it when the receipt arrives
    except LedgerError:
        mark_pending(ctx, ids)  # refused by the dry run, before anything was stored (a revert has done it already)
        raise
    crash_point("approve.recorded")
    return [get(ctx, i) for i in ids]


def _resume_issue(ctx: Context, ids: list[int]) -> list[Application] | None:
    """A dead attempt of this approval got part-way: finish its stored transaction, or undo its claim on the
    applications if it never stored one; None when the approval should simply run again."""
    apps = [get(ctx, i) for i in ids]
    if all(a.status == "pending" for a in apps):
        return None
    if all(a.status == "issued" for a in apps):
        return apps
    tx = txstore.latest(ctx.engine, TxKind.ISSUE, ",".join(map(str, ids)))
    if tx is None:  # it died before signing: as if never approved
        mark_pending(ctx, ids)
        return None
    if tx.status == TxStatus.SIGNED:  # a revert raises, the applications pending again
        submitted = ctx.pipeline.follow_sync(stored_of(tx))
        if submitted.pending:
            raise TransactionPending(f"issuance {tx.tx_hash} is not yet in a block", tx_hash=tx.tx_hash)
    return [get(ctx, i) for i in ids]


def issued(conn: Connection, tx: StoredTx, outcome: TxOutcome) -> None:
    """The issuance's completion handler: its applications are issued, with the transaction and block."""
    conn.execute(
        update(_APPLICATIONS)
        .where(_APPLICATIONS.c.id.in_(_ids(tx.ref)), _APPLICATIONS.c.status == "issuing")
        .values(
            status="issued",
            tx_hash=outcome.tx_hash,
            block_number=outcome.block_number,
            approved_amount=func.coalesce(_APPLICATIONS.c.approved_amount, _APPLICATIONS.c.amount),
        )
    )


def issue_failed(conn: Connection, tx: StoredTx, _error: LedgerError) -> None:
    _pending(conn, _ids(tx.ref))


def mark_pending(ctx: Context, ids: list[int]) -> None:
    ctx.writer.run(lambda conn: _pending(conn, ids))


def _pending(conn: Connection, ids: list[int]) -> None:
    """Undecided again, as if never approved."""
    conn.execute(
        update(_APPLICATIONS)
        .where(_APPLICATIONS.c.id.in_(ids), _APPLICATIONS.c.status == "issuing")
        .values(status="pending", approved_amount=None, decided_at=None)
    )


def _ids(ref: str) -> list[int]:
    return [int(i) for i in ref.split(",") if i]


def _precheck(ctx: Context, pid: int, apps: list[Application], amounts: dict[int, int]) -> None:
    state = ctx.chain.programme(pid)
    if ctx.chain.now() >= state.valid_until:
        raise ProgrammeExpired(f"programme {pid} has expired: nothing more can be issued")
    total = sum(amounts.values())
    if total > state.available:
        raise BudgetExceeded(
            f"programme {pid} has {yuan(state.available)} left; {yuan(total)} asked",
            available=state.available,
            requested=total,
        )
    per_enterprise: dict[int, int] = defaultdict(int)
    for a in apps:
        assert a.id is not None  # rows read from the database have their primary key
        per_enterprise[a.enterprise_id] += amounts[a.id]
    with ctx.read() as s:
        for enterprise_id, amount in per_enterprise.items():
            e = s.get(Participant, enterprise_id)
            assert e is not None
            if e.frozen:
                raise AccountFrozen(f"enterprise {enterprise_id} is frozen")
            left = state.cap_per_enterprise - int(ctx.chain.call("issuedTo", pid, e.address))
            if amount > left:
                raise CapExceeded(
                    f"enterprise {enterprise_id} may receive {yuan(left)} more; {yuan(amount)} asked",
                    enterprise_id=enterprise_id,
                    available=left,
                    requested=amount,
                )


def _claim(ctx: Context, ids: list[int], *, to: str, reason: str | None = None) -> None:
    """Moves pending applications to `to` atomically: a second approver finds them taken."""
    with ctx.write() as s:
        result = s.exec(
            update(Application)
            .where(col(Application.id).in_(ids), col(Application.status) == "pending")
            .values(status=to, reason=reason, decided_at=utcnow())
        )
        if result.rowcount != len(ids):
            s.rollback()
            raise InvalidState("only pending applications can be decided; some were decided already")
        s.commit()


def _set(
    ctx: Context,
    ids: list[int],
    *,
    status: str,
    tx_hash: str | None = None,
    block_number: int | None = None,
    amounts: dict[int, int] | None = None,
) -> None:
    with ctx.write() as s:
        for i in ids:
            row = s.get(Application, i)
            assert row is not None
            row.status = status
            row.tx_hash = tx_hash or row.tx_hash
            row.block_number = block_number or row.block_number
            if amounts is not None:
                row.approved_amount = amounts[i]
            s.add(row)
        s.commit()
