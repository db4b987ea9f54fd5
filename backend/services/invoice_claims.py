"""Which claim holds an invoice: at most one live claim per invoice and provider (an InvoiceClaim row), and a
pending claim holds it only until it expires (`claim_ttl_s`).

Expiry is applied where it matters: when the enterprise confirms or refuses, and when the same provider claims
the invoice again; the monitor voids the rest in the background, so listings say "expired". Between providers
the database decides nothing: the contract's single use of the invoice hash does, so a claim left pending by one
provider cannot lock an invoice away from another.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Table, delete, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlmodel import col, select

from backend.errors import ClaimExpired
from backend.models import InvoiceClaim, Redemption, unix_time
from backend.services.context import Context

_REDEMPTIONS: Table = Redemption.__table__  # type: ignore[attr-defined]
_HOLDS: Table = InvoiceClaim.__table__  # type: ignore[attr-defined]


def expired(ctx: Context, created_at: datetime) -> bool:
    return unix_time(ctx.clock()) >= unix_time(created_at) + ctx.settings.claim_ttl_s


async def store(ctx: Context, values: dict[str, Any]) -> Row[Any] | None:
    """The new claim, stored with its hold on the invoice; None when the provider already holds the invoice with a
    live claim. A pending claim of the same provider that has expired is voided first, and no longer counts."""
    row = await ctx.writer.run_async(lambda conn: _insert(conn, values))
    if row is None and await asyncio.to_thread(_void_stale, ctx, values["invoice_hash"], values["provider_id"]):
        row = await ctx.writer.run_async(lambda conn: _insert(conn, values))
    return row


def held_by(ctx: Context, invoice_hash: str, provider_id: int) -> Redemption | None:
    """The provider's claim that holds the invoice, if any."""
    with ctx.read() as s:
        hold = s.get(InvoiceClaim, (invoice_hash, provider_id))
        return s.get(Redemption, hold.redemption_id) if hold is not None else None


def ensure_live(ctx: Context, redemption_id: int, status: str, created_at: datetime) -> None:
    """ClaimExpired for a claim that is void, or pending past its time (it is then voided: the invoice is free)."""
    if status == "pending" and expired(ctx, created_at):
        if not void(ctx, redemption_id):
            return  # moved on meanwhile (a concurrent confirm or refuse): the caller's own update will tell
    elif status != "expired":
        return
    raise ClaimExpired(redemption_id, ctx.settings.claim_ttl_s)


def void_expired(ctx: Context, *, limit: int = 500) -> int:
    """Voids pending claims past their time, so listings say "expired" before anyone touches them (the monitor's
    job; confirm, refuse and a new claim check expiry themselves). Returns how many it voided."""
    cutoff = ctx.clock() - timedelta(seconds=ctx.settings.claim_ttl_s)
    with ctx.read() as s:
        stale = s.exec(
            select(Redemption.id)
            .where(col(Redemption.status) == "pending", col(Redemption.created_at) <= cutoff)
            .order_by(col(Redemption.id))
            .limit(limit)
        ).all()
    return sum(void(ctx, rid) for rid in stale if rid is not None)


def void(ctx: Context, redemption_id: int) -> bool:
    """Moves a pending claim to "expired" and lets go of its invoice; False if it was no longer pending."""
    with ctx.write() as s:
        conn = s.connection()
        row = conn.execute(
            update(_REDEMPTIONS)
            .where(_REDEMPTIONS.c.id == redemption_id, _REDEMPTIONS.c.status == "pending")
            .values(status="expired", error_code=ClaimExpired.code, error_message="not confirmed in time")
            .values(updated_at=ctx.clock())
            .returning(_REDEMPTIONS.c.invoice_hash, _REDEMPTIONS.c.provider_id)
        ).first()
        if row is not None:
            release(conn, row.invoice_hash, row.provider_id, redemption_id)
        s.commit()
    return row is not None


def release(conn: Connection, invoice_hash: str, provider_id: int, redemption_id: int) -> None:
    """Lets go of the invoice the claim held (refused, failed or expired): the provider may claim it again."""
    conn.execute(
        delete(InvoiceClaim).where(
            col(InvoiceClaim.invoice_hash) == invoice_hash,
            col(InvoiceClaim.provider_id) == provider_id,
            col(InvoiceClaim.redemption_id) == redemption_id,
        )
    )


def _insert(conn: Connection, values: dict[str, Any]) -> Row[Any] | None:
    # Core statements, and no savepoint: the hot path avoids the ORM's unit of work and the extra round trips.
    row = conn.execute(insert(_REDEMPTIONS).values(**values).returning(*_REDEMPTIONS.c)).one()
    upsert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    hold = {"invoice_hash": row.invoice_hash, "provider_id": row.provider_id, "redemption_id": row.id}
    held = upsert(_HOLDS).values(**hold).on_conflict_do_nothing().returning(_HOLDS.c.redemption_id)
    if (
        conn.execute(held).first() is None
    ):  # the unique key (invoice, provider): a live claim holds it, or a concurrent one won
        conn.execute(delete(_REDEMPTIONS).where(_REDEMPTIONS.c.id == row.id))
        return None
    return row


def _void_stale(ctx: Context, invoice_hash: str, provider_id: int) -> bool:
    """Whether the hold that refused a new claim is gone now: released meanwhile, or its claim expired."""
    held = held_by(ctx, invoice_hash, provider_id)
    if held is None:
        return True
    assert held.id is not None
    return held.status == "pending" and expired(ctx, held.created_at) and void(ctx, held.id)
