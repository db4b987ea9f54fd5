"""Recovery of stored transactions from node faults, run by the monitor.

- A node restored from an older state (anvil killed and restarted from its last dump) no longer has
  transactions the database records as mined: they go back to "signed" and are re-sent, in nonce order, from
  their stored bytes. Nothing is signed again, so nothing can be applied twice.
- A transaction left without a receipt for `stuck_after_s` is looked at per signer, lowest nonce first: if
  its nonce was spent by another transaction it is "replaced"; if the node refuses it, it is "dropped" and a
  filler (a transfer of nothing to itself) takes its nonce; if nonces below it were never used (a gap), fillers
  take them. Either way the signer's later transactions can be mined again, and the caller fails the records
  of the transactions given up.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from backend.chain import txstore
from backend.chain.pipeline import TxPipeline
from backend.db import session_scope
from backend.errors import ChainError, NodeUnavailable, TransactionDropped
from backend.models import ChainTx, utcnow

log = logging.getLogger(__name__)
MINED = ("confirmed", "reverted")


def reopen_lost(pipeline: TxPipeline) -> int:
    """Transactions recorded as mined whose nonce the chain has not reached: back to "signed"."""
    with Session(pipeline.writer.engine) as s:
        q = select(ChainTx.signer, func.max(ChainTx.nonce)).where(col(ChainTx.status).in_(MINED))
        tops = s.exec(q.group_by(col(ChainTx.signer))).all()
    reopened = 0
    for signer, top in tops:
        mined = pipeline.rpc.latest_nonce(signer)
        if top < mined:
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
    return reopened


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
