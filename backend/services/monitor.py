"""Finishes what requests could not wait for: transactions without a receipt are looked up (or re-sent
if the node lost them) and, once mined, the claim or application they belong to is completed."""

from __future__ import annotations

import logging

from backend.chain import recovery, txstore
from backend.chain.pipeline import stored_of
from backend.chain.txtypes import StoredTx
from backend.errors import LedgerError, NodeUnavailable
from backend.services import invoice_claims
from backend.services.background import Periodic
from backend.services.completions import COMPLETIONS
from backend.services.context import Context

log = logging.getLogger(__name__)
RECOVER_EVERY = 5  # passes: a rolled-back node or a stuck transaction is noticed within about five seconds


def sweep(ctx: Context, *, older_than_s: float = 3.0) -> int:
    """One pass over unresolved transactions: each mined one is finished by its kind's completion handler (a lost
    one is sent again). Returns how many were finished."""
    done = 0
    for tx in txstore.unresolved(ctx.engine, older_than_s):
        stored, receipt = stored_of(tx), None
        try:
            receipt = ctx.pipeline.resolve(stored)
            if receipt is None:
                continue
            ctx.pipeline.complete(stored, receipt)
        except NodeUnavailable:
            raise
        except LedgerError as exc:  # a revert (recorded, its record failed), or the node refuses to take it back
            log.warning("monitor: %s for %s", exc.code, tx.tx_hash)
            if receipt is None:
                continue  # `recover` deals with a transaction the node refuses, in time
        _after(ctx, stored)
        done += 1
    return done


def recover(ctx: Context, seen: recovery.MinedSoFar | None = None) -> int:
    """Node faults: re-opens what a rolled-back chain lost, and gives up (failing its record) what is stuck."""
    reopened = recovery.reopen_lost(ctx.pipeline, seen)
    for tx, error in recovery.unstick(ctx.pipeline, ctx.settings.stuck_after_s):
        ctx.pipeline.give_up(stored_of(tx), error)
    return reopened


def _after(ctx: Context, stored: StoredTx) -> None:
    completion = COMPLETIONS.get(stored.kind)
    if completion is not None and completion.after is not None:
        completion.after(ctx, stored)


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
