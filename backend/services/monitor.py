"""Finishes what requests could not wait for: transactions without a receipt are looked up (or re-sent
if the node lost them) and, once mined, the claim or application they belong to is completed."""

from __future__ import annotations

import logging
import threading

from backend.chain.pipeline import TxOutcome
from backend.errors import LedgerError, NodeUnavailable
from backend.models import ChainTx
from backend.services import applications, redemptions
from backend.services.context import Context

log = logging.getLogger(__name__)


def apply_outcome(ctx: Context, tx: ChainTx, result: TxOutcome | LedgerError) -> None:
    """Moves the business record a transaction belongs to into its final state."""
    ok = isinstance(result, TxOutcome)
    if tx.kind == "redeem":
        if ok:
            redemptions.finish(ctx, redemption_id=int(tx.ref), tx_hash=result.tx_hash, block_number=result.block_number)
        else:
            redemptions.finish(ctx, redemption_id=int(tx.ref), error=result)  # type: ignore[arg-type]
    elif tx.kind == "issue":
        ids = [int(i) for i in tx.ref.split(",") if i]
        if ok:
            applications.mark_issued(ctx, ids, tx_hash=result.tx_hash, block_number=result.block_number)
        else:
            applications.mark_pending(ctx, ids)


def sweep(ctx: Context, *, older_than_s: float = 3.0) -> int:
    """One pass over unresolved transactions; returns how many were resolved."""
    done = 0
    for tx in ctx.pipeline.unresolved(older_than_s):
        result = ctx.pipeline.resolve(tx)
        if result is not None:
            apply_outcome(ctx, tx, result)
            done += 1
    return done


class Monitor:
    def __init__(self, ctx: Context, *, interval_s: float = 1.0) -> None:
        self._ctx, self._interval = ctx, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tx-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                sweep(self._ctx)
            except NodeUnavailable:
                continue
            except LedgerError as exc:  # keep running; the next pass tries again
                log.warning("monitor: %s", exc.code)
