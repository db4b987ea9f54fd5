"""Recovery of stored transactions from node faults, run by the monitor.

- A node restored from an older state (anvil killed and restarted from its last dump) no longer has
  transactions the database records as mined: they go back to "signed" and are re-sent, in nonce order, from
  their stored bytes. Nothing is signed again, so nothing can be applied twice. The monitor keeps what a pass
  learnt for the next, so a pass costs what changed since the last one, not the whole history.
- A transaction left without a receipt for `stuck_after_s` is looked at per signer, lowest nonce first: if
  its nonce was spent by another transaction it is "replaced"; if the node refuses it, it is "dropped" and a
  filler (a transfer of nothing to itself) takes its nonce; if nonces below it were never used (a gap), fillers
  take them. Either way the signer's later transactions can be mined again, and the caller fails the records
  of the transactions given up.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlmodel import Session, col, select

from backend.chain import txstore
from backend.chain.pipeline import TxPipeline
from backend.db import session_scope
from backend.errors import ChainError, NodeUnavailable, TransactionDropped
from backend.models import ChainTx, utcnow

log = logging.getLogger(__name__)
MINED = ("confirmed", "reverted")
# A row in one of these states never becomes mined again unless reopen_lost itself reopens it.
FINAL = (*MINED, "replaced", "dropped")
# Ids are taken at insert but rows become visible at commit, not always in id order (PostgreSQL): rows this
# recent are read again at each pass, so one whose insert committed late is still seen.
LATE_COMMIT_S = 60.0


@dataclass
class MinedSoFar:
    """What earlier passes of `reopen_lost` learnt, so that a pass reads only what changed since: the rows
    after `mark`, and the nonces of the signers whose top rose, unless the chain went back under `anchor`."""

    tops: dict[str, int] = field(default_factory=dict)  # signer -> highest nonce recorded as mined
    verified: dict[str, int] = field(default_factory=dict)  # signer -> top the chain was seen to hold
    mark: int = 0  # every row up to this id was final when read (and is folded into `tops`)
    anchor: tuple[int, str] | None = None  # (number, hash) of the head when nonces were last checked
    candidates: deque[tuple[float, int]] = field(default_factory=deque)  # (when, mark) not yet old enough
    clock: Callable[[], float] = time.monotonic

    def forget(self) -> None:
        """Rows went back to "signed": the next pass reads them all again, as the first one did."""
        self.tops, self.verified, self.mark, self.anchor = {}, {}, 0, None
        self.candidates.clear()


def reopen_lost(pipeline: TxPipeline, seen: MinedSoFar | None = None) -> int:
    """Transactions recorded as mined whose nonce the chain has not reached: back to "signed".

    Without `seen` every row and every signer is looked at. With it (the monitor keeps one), a pass reads the
    rows added or finished since the last one and asks the chain for the nonce of the signers with newly
    mined transactions only, unless the block that was the head at the last pass has left the chain (a node
    restored from an older state, a reorg): then every signer is asked again, as without it.
    """
    seen = seen if seen is not None else MinedSoFar()
    _fold_new_rows(pipeline, seen)
    if seen.anchor is None or not _still_there(pipeline, *seen.anchor):
        seen.verified.clear()
    head = pipeline.rpc.call("eth_getBlockByNumber", ["latest", False])  # read before the nonces it vouches for
    reopened = 0
    for signer, top in seen.tops.items():
        if seen.verified.get(signer, -1) >= top:
            continue
        mined = pipeline.rpc.latest_nonce(signer)
        if top < mined:
            seen.verified[signer] = top
            continue
        with session_scope(pipeline.writer.engine) as s:
            reopened += s.exec(
                update(ChainTx)
                .where(col(ChainTx.signer) == signer, col(ChainTx.nonce) >= mined, col(ChainTx.status).in_(MINED))
                .values(status="signed", block_number=None, updated_at=utcnow())
            ).rowcount
        log.warning(
            "the chain lost transactions of %s from nonce %s (node restored from an older state)", signer, mined
        )
    if reopened:
        pipeline.forget_signers()  # nonces are read from the chain again before the next use
        seen.forget()
    elif head is not None:
        seen.anchor = (int(head["number"], 16), str(head["hash"]))
    return reopened


def _fold_new_rows(pipeline: TxPipeline, seen: MinedSoFar) -> None:
    with Session(pipeline.writer.engine) as s:
        q = select(ChainTx.id, ChainTx.signer, ChainTx.nonce, ChainTx.status).where(col(ChainTx.id) > seen.mark)
        rows = s.exec(q.order_by(col(ChainTx.id))).all()
    ids: list[int] = []
    open_ids: list[int] = []
    for row_id, signer, nonce, status in rows:
        if status in MINED and nonce > seen.tops.get(signer, -1):
            seen.tops[signer] = nonce
        ids.append(int(row_id or 0))
        if status not in FINAL:
            open_ids.append(ids[-1])
    # The mark may pass every row read but those not final yet: they are read again until they are.
    if open_ids:
        limit = open_ids[0] - 1
    else:
        limit = ids[-1] if ids else seen.candidates[-1][1] if seen.candidates else seen.mark
    now = seen.clock()
    seen.candidates.append((now, limit))
    while seen.candidates and seen.candidates[0][0] <= now - LATE_COMMIT_S:
        seen.mark = max(seen.mark, min(seen.candidates.popleft()[1], limit))


def _still_there(pipeline: TxPipeline, number: int, block_hash: str) -> bool:
    block = pipeline.rpc.call("eth_getBlockByNumber", [hex(number), False])
    return block is not None and block.get("hash") == block_hash


def unstick(pipeline: TxPipeline, stuck_after_s: float) -> list[tuple[ChainTx, TransactionDropped]]:
    """Resolves transactions without a receipt for `stuck_after_s`; returns those given up, with the reason."""
    by_signer: dict[str, list[ChainTx]] = defaultdict(list)
    for tx in txstore.unresolved(pipeline.writer.engine, stuck_after_s):
        by_signer[tx.signer].append(tx)
    given_up: list[tuple[ChainTx, TransactionDropped]] = []
    for signer, txs in by_signer.items():
        mined = pipeline.rpc.latest_nonce(signer)
        for tx in sorted(txs, key=lambda t: t.nonce):
            if pipeline.rpc.receipt(tx.tx_hash) is not None:
                continue  # mined after all: the monitor's next pass records it
            if tx.nonce < mined:
                why = f"its nonce {tx.nonce} was used by another transaction of {signer}"
                given_up.append((tx, _give_up(pipeline, tx, "replaced", why)))
                continue
            for hole in range(mined, tx.nonce):  # nonces below it that no transaction will ever take
                _send_filler(pipeline, signer, hole)
            try:
                pipeline.broadcast(tx.raw, tx.tx_hash)
            except ChainError as exc:
                if isinstance(exc, NodeUnavailable):
                    raise
                given_up.append((tx, _give_up(pipeline, tx, "dropped", f"the node refuses it: {exc.message}")))
                _send_filler(pipeline, signer, tx.nonce)
            mined = max(mined, tx.nonce + 1)
    return given_up


def _give_up(pipeline: TxPipeline, tx: ChainTx, status: str, why: str) -> TransactionDropped:
    error = TransactionDropped(f"transaction {tx.tx_hash} will never be mined: {why}", tx_hash=tx.tx_hash)
    with session_scope(pipeline.writer.engine) as s:
        s.exec(
            update(ChainTx)
            .where(col(ChainTx.id) == tx.id, col(ChainTx.status) == "signed")
            .values(status=status, error_code=error.code, error=error.message, updated_at=utcnow())
        )
    log.warning("%s: %s", status, error.message)
    return error


def _send_filler(pipeline: TxPipeline, signer: str, nonce: int) -> None:
    raw, tx_hash = pipeline.sign_filler(signer, nonce)
    pipeline.broadcast(raw, tx_hash)
    log.warning("nonce %s of %s filled by %s so the transactions after it can be mined", nonce, signer, tx_hash)
