"""Finishes what requests could not wait for: transactions without a receipt are looked up (or re-sent
if the node lost them) and, once mined, the claim or application they belong to is completed."""

from __future__ import annotations

import logging

from backend.chain import recovery
from backend.chain.pipeline import TxOutcome
from backend.errors import LedgerError, NodeUnavailable
from backend.models import ChainTx
from backend.services import (
    applications,
    invoice_claims,
    participants,
    programmes,
    redemptions,
    rotation,
    settlements,
    supervision,
)
from backend.services.background import Periodic
from backend.services.context import Context

log = logging.getLogger(__name__)
RECOVER_EVERY = 5  # passes: a rolled-back node or a stuck transaction is noticed within about five seconds


def apply_outcome(ctx: Context, tx: ChainTx, result: TxOutcome | LedgerError) -> None:
    """Moves the record a transaction belongs to into its final state, as the request would have."""
    if isinstance(result, LedgerError):
        _apply_failure(ctx, tx, result)
        return
    if tx.kind == "redeem":
        redemptions.finish(ctx, redemption_id=int(tx.ref), result=result)
    elif tx.kind == "issue":
        applications.mark_issued(ctx, _ids(tx.ref), tx_hash=result.tx_hash, block_number=result.block_number)
    elif tx.kind in ("reclaim", "revoke"):
        supervision.record_adjustments(ctx, result)
    elif tx.kind in ("freeze", "unfreeze"):
        participants.store_frozen(ctx, participant_id=int(tx.ref), frozen=tx.kind == "freeze")
    elif tx.kind == "related_party":
        related = next(ev.args["related"] for ev in ctx.chain.decode_logs(result) if ev.name == "RelatedPartySet")
        enterprise_id, provider_id = _ids(tx.ref.replace(":", ","))
        participants.store_related(ctx, enterprise_id=enterprise_id, provider_id=provider_id, related=related)
    elif tx.kind == "create_programme":
        programmes.record_created(ctx, result, name=tx.ref)
    elif tx.kind == settlements.ANCHOR_KIND:
        settlements.finish(ctx, batch_id=int(tx.ref), result=result)
    elif tx.kind in rotation.KINDS:
        rotation.resume(ctx, rotation_id=int(tx.ref))
    # register, grant_role, pause, unpause: the chain's state is all there is to record.


def _apply_failure(ctx: Context, tx: ChainTx, error: LedgerError) -> None:
    if tx.kind == "redeem":
        redemptions.finish(ctx, redemption_id=int(tx.ref), result=error)
    elif tx.kind == "issue":
        applications.mark_pending(ctx, _ids(tx.ref))
    elif tx.kind == "register":
        participants.forget(ctx, participant_id=int(tx.ref))
    elif tx.kind == settlements.ANCHOR_KIND:
        settlements.finish(ctx, batch_id=int(tx.ref), result=error)


def _ids(ref: str) -> list[int]:
    return [int(i) for i in ref.split(",") if i]


def sweep(ctx: Context, *, older_than_s: float = 3.0) -> int:
    """One pass over unresolved transactions; returns how many were resolved."""
    done = 0
    for tx in ctx.pipeline.unresolved(older_than_s):
        try:
            result = ctx.pipeline.resolve(tx)
        except NodeUnavailable:
            raise
        except LedgerError as exc:  # e.g. the node refuses to take it back: `recover` deals with it in time
            log.warning("monitor: %s for %s", exc.code, tx.tx_hash)
            continue
        if result is not None:
            apply_outcome(ctx, tx, result)
            done += 1
    return done


def recover(ctx: Context, seen: recovery.MinedSoFar | None = None) -> int:
    """Node faults: re-opens what a rolled-back chain lost, and gives up (failing its record) what is stuck."""
    reopened = recovery.reopen_lost(ctx.pipeline, seen)
    for tx, error in recovery.unstick(ctx.pipeline, ctx.settings.stuck_after_s):
        apply_outcome(ctx, tx, error)
    return reopened


class Monitor(Periodic):
    """Finishes late transactions every pass; looks for node faults, and voids expired claims, every RECOVER_EVERY
    passes."""

    name = "tx-monitor"

    def __init__(self, ctx: Context, *, interval_s: float = 1.0) -> None:
        super().__init__(ctx, interval_s=interval_s)
        self._passes = 0
        self._seen = recovery.MinedSoFar()  # so a recovery pass reads only what changed since the last

    def step(self) -> None:
        if self._passes % RECOVER_EVERY == 0:
            recover(self._ctx, self._seen)
            invoice_claims.void_expired(self._ctx)
        self._passes += 1
        sweep(self._ctx)
