"""The service's own transactions, as the pipeline stored them."""

from __future__ import annotations

from sqlmodel import select

from backend.errors import NotFound
from backend.models import ChainTx
from backend.services.context import Context


def get(ctx: Context, tx_hash: str) -> ChainTx:
    """The transaction with this hash (any case), or NotFound."""
    with ctx.read() as s:
        row = s.exec(select(ChainTx).where(ChainTx.tx_hash == tx_hash.lower())).first()
    if row is None:
        raise NotFound("transaction", tx_hash)
    return row
