"""Reclaim after expiry (issuer), revoke with a reason code (supervisor), pause and unpause."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection
from sqlmodel import col, select

from backend.chain.txtypes import StoredTx, TxOutcome
from backend.errors import InvalidInput, InvalidState, ProgrammeStillActive
from backend.models import Adjustment, Application, Participant, utcnow
from backend.models.states import TxKind
from backend.money import yuan
from backend.services import participants, programmes
from backend.services.context import Context

RECLAIM_CHUNK = 200  # holders per reclaim transaction
_ADJUSTMENTS: Table = Adjustment.__table__  # type: ignore[attr-defined]
_PARTICIPANTS: Table = Participant.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ChainAction:
    tx_hashes: list[str]
    amount: int
    holders: int


def holders_of(ctx: Context, programme_id: int) -> list[Participant]:
    """Enterprises that were ever issued vouchers of the programme."""
    with ctx.read() as s:
        ids = s.exec(
            select(Application.enterprise_id)
            .where(Application.programme_id == programme_id, Application.status == "issued")
            .distinct()
        ).all()
        return list(s.exec(select(Participant).where(col(Participant.id).in_(ids)).order_by(col(Participant.id))).all())


def reclaim(ctx: Context, *, programme_id: int) -> ChainAction:
    state = ctx.chain.programme(programmes.get_row(ctx, programme_id).id)
    if ctx.chain.now() < state.valid_until:
        raise ProgrammeStillActive(f"programme {programme_id} is still open: reclaim after it expires")
    holders = [h.address for h in holders_of(ctx, programme_id) if ctx.chain.balance(h.address, programme_id) > 0]
    hashes, total = [], 0
    for i in range(0, len(holders), RECLAIM_CHUNK):
        sent = ctx.chain.send(ctx.operators["issuer"], "reclaim", programme_id, holders[i : i + RECLAIM_CHUNK],
                              kind=TxKind.RECLAIM, ref=str(programme_id))  # fmt: skip
        hashes.append(sent.tx_hash)
        total += int(sent.value)  # what the completion handler, `record_adjustments`, recorded
    return ChainAction(tx_hashes=hashes, amount=total, holders=len(holders))


def revoke(ctx: Context, *, programme_id: int, enterprise_id: int, amount: int, reason_code: int) -> ChainAction:
    enterprise = participants.get(ctx, enterprise_id, kind="enterprise")
    programmes.get_row(ctx, programme_id)
    balance = ctx.chain.balance(enterprise.address, programme_id)
    if not 0 < amount <= balance:
        raise InvalidInput(f"amount must be between 1 fen and the balance {yuan(balance)}", field="amount")
    if not 0 < reason_code < 2**32:
        raise InvalidInput("reason_code must be a positive 32-bit code", field="reason_code")
    sent = ctx.chain.send(ctx.operators["supervisor"], "revoke", programme_id, enterprise.address, amount, reason_code,
                          kind=TxKind.REVOKE, ref=f"{programme_id}:{enterprise_id}")  # fmt: skip
    return ChainAction(tx_hashes=[sent.tx_hash], amount=amount, holders=1)


def record_adjustments(conn: Connection, _tx: StoredTx, outcome: TxOutcome) -> int:
    """Records the reclaims and revocations a mined transaction made, from its events; returns their total (the
    completion handler of reclaim and revoke)."""
    events = [ev for ev in outcome.events() if ev.name in ("VoucherReclaimed", "VoucherRevoked")]
    total = sum(int(ev.args["amount"]) for ev in events)
    if conn.execute(select(_ADJUSTMENTS.c.id).where(_ADJUSTMENTS.c.tx_hash == outcome.tx_hash)).first() is not None:
        return total  # already recorded
    holders = [ev.args["holder"] for ev in events]
    ids: dict[str, int] = dict(conn.execute(select(_PARTICIPANTS.c.address, _PARTICIPANTS.c.id).where(
        _PARTICIPANTS.c.address.in_(holders))).all())  # fmt: skip
    for ev in events:
        conn.execute(
            insert(_ADJUSTMENTS).values(
                kind="reclaim" if ev.name == "VoucherReclaimed" else "revoke",
                programme_id=int(ev.args["programmeId"]),
                enterprise_id=ids[ev.args["holder"]],
                amount=int(ev.args["amount"]),
                reason_code=ev.args.get("reasonCode"),
                tx_hash=outcome.tx_hash,
                block_number=outcome.block_number,
                created_at=utcnow(),
            )
        )
    return total


def set_paused(ctx: Context, *, paused: bool, role: str) -> ChainAction:
    if ctx.chain.paused() == paused:
        raise InvalidState(f"the ledger is already {'paused' if paused else 'running'}")
    if not paused and role != "admin":
        raise InvalidState("only the admin may resume the ledger")
    sender = ctx.operators["admin" if role == "admin" else "supervisor"]
    kind = TxKind.PAUSE if paused else TxKind.UNPAUSE
    sent = ctx.chain.send(sender, kind.value, kind=kind)
    return ChainAction(tx_hashes=[sent.tx_hash], amount=0, holders=0)
