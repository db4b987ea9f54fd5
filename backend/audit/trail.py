"""The supervisors' audit trail: mirrored events filtered and paged, and statements per enterprise and provider,
each stating the block it is consistent with."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from backend.audit import mirror
from backend.errors import InvalidInput, NotFound
from backend.models import ChainEvent, FormerAddress, Participant
from backend.services.context import Context

MAX_PAGE = 1000
# How each voucher event moves an enterprise's holding in its programme.
MOVES = {"VoucherIssued": "issued", "VoucherRedeemed": "redeemed", "VoucherReclaimed": "reclaimed",
         "VoucherRevoked": "revoked"}  # fmt: skip


@dataclass(frozen=True)
class EventPage:
    block: int
    events: list[ChainEvent]
    next_after: int | None


def list_events(
    ctx: Context,
    *,
    enterprise_id: int | None = None,
    provider_id: int | None = None,
    programme_id: int | None = None,
    event: str | None = None,
    from_block: int | None = None,
    to_block: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: int = 0,
    limit: int = 100,
) -> EventPage:
    """Events in chain order. `after` is the last id of the previous page: stable while new events arrive."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    block = mirror.sync(ctx)
    q = select(ChainEvent).where(col(ChainEvent.id) > after)
    if enterprise_id is not None:
        q = q.where(col(ChainEvent.account).in_(addresses_of(ctx, enterprise_id, "enterprise")))
    if provider_id is not None:
        q = q.where(col(ChainEvent.provider).in_(addresses_of(ctx, provider_id, "provider")))
    if programme_id is not None:
        q = q.where(ChainEvent.programme_id == programme_id)
    if event is not None:
        q = q.where(ChainEvent.name == event)
    if from_block is not None:
        q = q.where(col(ChainEvent.block_number) >= from_block)
    if to_block is not None:
        q = q.where(col(ChainEvent.block_number) <= to_block)
    if since is not None:
        q = q.where(col(ChainEvent.block_time) >= since)
    if until is not None:
        q = q.where(col(ChainEvent.block_time) < until)
    with ctx.read() as s:
        rows = list(s.exec(q.order_by(col(ChainEvent.id)).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return EventPage(block=block, events=rows, next_after=rows[-1].id if more and rows else None)


def _address(ctx: Context, participant_id: int, kind: str) -> str:
    row = ctx.fetch(Participant, participant_id, kind)
    if row.kind != kind:
        raise NotFound(kind, participant_id)  # an enterprise's id names no provider: 404, like any unknown id
    return row.address


def addresses_of(ctx: Context, participant_id: int, kind: str) -> list[str]:
    """The participant's managed address and every one it used before a key rotation."""
    current = _address(ctx, participant_id, kind)
    with ctx.read() as s:
        former = s.exec(select(FormerAddress.address).where(FormerAddress.participant_id == participant_id)).all()
    return [current, *former]


@dataclass
class Holding:
    programme_id: int
    issued: int = 0
    redeemed: int = 0
    reclaimed: int = 0
    revoked: int = 0
    migrated_in: int = 0
    migrated_out: int = 0

    @property
    def balance(self) -> int:
        return self.issued + self.migrated_in - self.redeemed - self.reclaimed - self.revoked - self.migrated_out


@dataclass
class Statement:
    participant_id: int
    address: str
    block: int
    programmes: dict[int, Any] = field(default_factory=dict)


def holdings_by_account(rows: list[ChainEvent]) -> dict[tuple[str, int], Holding]:
    """(holder, programme) -> movements, from voucher events (the mirror's view of every balance)."""
    out: dict[tuple[str, int], Holding] = {}

    def at(account: str, programme: int) -> Holding:
        return out.setdefault((account, programme), Holding(programme))

    for row in rows:
        if row.programme_id is None:
            continue
        if row.name in MOVES and row.account is not None:
            h = at(row.account, row.programme_id)
            setattr(h, MOVES[row.name], getattr(h, MOVES[row.name]) + int(row.arguments()["amount"]))
        elif row.name == "VoucherMigrated":
            a = row.arguments()
            at(a["from"], row.programme_id).migrated_out += int(a["amount"])
            at(a["to"], row.programme_id).migrated_in += int(a["amount"])
    return out


def enterprise_statement(ctx: Context, *, enterprise_id: int) -> Statement:
    """Per programme, over all the enterprise's keys: a rotation shows as migrated out of the old key and in to
    the new one, which leaves the balance as it was."""
    address, *former = addresses_of(ctx, enterprise_id, "enterprise")
    block = mirror.sync(ctx)
    names = [*MOVES, "VoucherMigrated"]
    with ctx.read() as s:
        rows = list(s.exec(select(ChainEvent).where(col(ChainEvent.name).in_(names))).all())
    mine: dict[int, Holding] = {}
    for (account, p), h in holdings_by_account(rows).items():
        if account in (address, *former):
            total = mine.setdefault(p, Holding(p))
            for f in ("issued", "redeemed", "reclaimed", "revoked", "migrated_in", "migrated_out"):
                setattr(total, f, getattr(total, f) + getattr(h, f))
    return Statement(enterprise_id, address, block, dict(sorted(mine.items())))


@dataclass
class ProviderFigures:
    programme_id: int
    redemptions: int = 0
    subsidy: int = 0
    invoices: int = 0
    by_category: dict[int, int] = field(default_factory=lambda: defaultdict(int))


def provider_statement(ctx: Context, *, provider_id: int) -> Statement:
    address, *former = addresses_of(ctx, provider_id, "provider")
    block = mirror.sync(ctx)
    with ctx.read() as s:
        keys = col(ChainEvent.provider).in_([address, *former])
        q = select(ChainEvent).where(ChainEvent.name == "VoucherRedeemed", keys)
        rows = list(s.exec(q).all())
    figures: dict[int, ProviderFigures] = {}
    for row in rows:
        a = row.arguments()
        f = figures.setdefault(int(a["programmeId"]), ProviderFigures(int(a["programmeId"])))
        f.redemptions += 1
        f.subsidy += int(a["amount"])
        f.invoices += int(a["invoiceAmount"])
        f.by_category[int(a["category"])] += int(a["amount"])
    return Statement(provider_id, address, block, dict(sorted(figures.items())))
