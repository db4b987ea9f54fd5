"""A signer's nonces in the database: reserved atomically (UPDATE ... RETURNING, safe across threads and worker
processes), and moved past the chain's count when the key was used outside the service."""

from __future__ import annotations

from sqlalchemy import case, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlmodel import col

from backend.models import ChainTx, Redemption, SettlementBatch, SignerNonce, utcnow

# Records that name their transaction before it is mined (the others take the hash from its outcome): they
# follow a stored transaction when it is signed again.
_NAMED_BEFORE_MINED = ((Redemption, "tx_hash"), (SettlementBatch, "anchor_tx_hash"))


def ensure_row(conn: Connection, sender: str, chain_next: int) -> None:
    """The signer's nonce row, made at the chain's count if new, and moved up to it if the key was used elsewhere."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(SignerNonce).values(address=sender, next_nonce=chain_next).on_conflict_do_nothing())
    conn.execute(  # someone else used this key: never reuse a nonce it spent
        update(SignerNonce)
        .where(col(SignerNonce.address) == sender, col(SignerNonce.next_nonce) < chain_next)
        .values(next_nonce=chain_next)
    )


def reserve(conn: Connection, sender: str, *, at_least: int = 0) -> int:
    """The signer's next nonce, and never one below `at_least` (the chain's count, after an outside use)."""
    current = col(SignerNonce.next_nonce)
    start = case((current < at_least, at_least), else_=current) if at_least else current
    row = conn.execute(
        update(SignerNonce).where(col(SignerNonce.address) == sender).values(next_nonce=start + 1).returning(current)
    ).first()
    assert row is not None, "signer has no nonce row; prepare() creates it before store()"
    return int(row[0]) - 1


def replace_unsent(conn: Connection, old_hash: str, *, nonce: int, raw: bytes, tx_hash: str) -> bool:
    """Stores a re-signed transaction in place of `old_hash` (never mined: its nonce went to another) and points
    every record naming it at the new one. False if it is no longer "signed" (the monitor gave it up)."""
    moved = conn.execute(
        update(ChainTx)
        .where(col(ChainTx.tx_hash) == old_hash, col(ChainTx.status) == "signed")
        .values(tx_hash=tx_hash, nonce=nonce, raw=raw, updated_at=utcnow())
    ).rowcount
    if moved != 1:
        return False
    for model, name in _NAMED_BEFORE_MINED:
        conn.execute(update(model).where(col(getattr(model, name)) == old_hash).values({name: tx_hash}))
    return True
