"""Reclaim after expiry (issuer), revoke with a reason code (supervisor), pause and unpause."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from backend.chain.pipeline import TxOutcome
from backend.errors import InvalidInput, InvalidState, ProgrammeStillActive
from backend.models import Adjustment, Application, Participant
from backend.money import yuan
from backend.services import participants, programmes
from backend.services.context import Context

RECLAIM_CHUNK = 200  # holders per reclaim transaction


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
        outcome = ctx.chain.send(
            ctx.operators["issuer"],
            "reclaim",
            programme_id,
            holders[i : i + RECLAIM_CHUNK],
            kind="reclaim",
            ref=str(programme_id),
        )
        hashes.append(outcome.tx_hash)
        total += record_adjustments(ctx, outcome)
    return ChainAction(tx_hashes=hashes, amount=total, holders=len(holders))


def revoke(ctx: Context, *, programme_id: int, enterprise_id: int, amount: int, reason_code: int) -> ChainAction:
    enterprise = participants.get(ctx, enterprise_id, kind="enterprise")
    programmes.get_row(ctx, programme_id)
    balance = ctx.chain.balance(enterprise.address, programme_id)
    if not 0 < amount <= balance:
        raise InvalidInput(f"amount must be between 1 fen and the balance {yuan(balance)}", field="amount")
    if not 0 < reason_code < 2**32:
        raise InvalidInput("reason_code must be a positive 32-bit code", field="reason_code")
    outcome = ctx.chain.send(
        ctx.operators["supervisor"],
        "revoke",
        programme_id,
        enterprise.address,
        amount,
        reason_code,
        kind="revoke",
        ref=f"{programme_id}:{enterprise_id}",
    )
    record_adjustments(ctx, outcome)
    return ChainAction(tx_hashes=[outcome.tx_hash], amount=amount, holders=1)


def record_adjustments(ctx: Context, outcome: TxOutcome) -> int:
    """Records the reclaims and revocations a mined transaction made, from its events; returns their total.

    Used both by the request that sent it and by the monitor when the receipt came too late for the request.
    """
    events = [ev for ev in ctx.chain.decode_logs(outcome) if ev.name in ("VoucherReclaimed", "VoucherRevoked")]
    total = 0
    with ctx.write() as s:
        if s.exec(select(Adjustment).where(Adjustment.tx_hash == outcome.tx_hash)).first() is not None:
            return sum(int(ev.args["amount"]) for ev in events)  # already recorded
        ids = {p.address: p.id for p in s.exec(select(Participant).where(Participant.kind == "enterprise")).all()}
        for ev in events:
            total += int(ev.args["amount"])
            enterprise_id = ids[ev.args["holder"]]
            assert enterprise_id is not None  # rows read from the database have their primary key
            s.add(
                Adjustment(
                    kind="reclaim" if ev.name == "VoucherReclaimed" else "revoke",
                    programme_id=int(ev.args["programmeId"]),
                    enterprise_id=enterprise_id,
                    amount=int(ev.args["amount"]),
                    reason_code=ev.args.get("reasonCode"),
                    tx_hash=outcome.tx_hash,
                    block_number=outcome.block_number,
                )
            )
        s.commit()
    return total


def set_paused(ctx: Context, *, paused: bool, role: str) -> ChainAction:
    if ctx.chain.paused() == paused:
        raise InvalidState(f"the ledger is already {'paused' if paused else 'running'}")
    if not paused and role != "admin":
        raise InvalidState("only the admin may resume the ledger")
    sender = ctx.operators["admin" if role == "admin" else "supervisor"]
    outcome = ctx.chain.send(sender, "pause" if paused else "unpause", kind="pause" if paused else "unpause")
    return ChainAction(tx_hashes=[outcome.tx_hash], amount=0, holders=0)
