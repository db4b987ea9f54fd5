"""Reading the stored transactions: what is still unresolved, and what an earlier attempt of a request stored."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from backend.models import ChainTx, utcnow
from backend.models.states import TxKind, TxStatus


def unresolved(engine: Engine, older_than_s: float) -> list[ChainTx]:
    """Stored transactions with no recorded outcome, in the order they were made: each signer's nonces in order,
    and across signers as they first happened (an issuance after the registration it needs)."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with Session(engine) as s:
        q = select(ChainTx).where(ChainTx.status == TxStatus.SIGNED, col(ChainTx.created_at) < cutoff)
        return list(s.exec(q.order_by(col(ChainTx.id))).all())


def find(engine: Engine, tx_hash: str) -> ChainTx | None:
    with Session(engine) as s:
        return s.exec(select(ChainTx).where(ChainTx.tx_hash == tx_hash)).first()


def latest(engine: Engine, kind: TxKind, ref: str) -> ChainTx | None:
    """The newest stored transaction of `kind` for `ref` (what a request taking over looks for)."""
    with Session(engine) as s:
        q = select(ChainTx).where(ChainTx.kind == kind, ChainTx.ref == ref).order_by(col(ChainTx.id).desc())
        return s.exec(q).first()
