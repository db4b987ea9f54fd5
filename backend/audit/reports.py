"""The reports, read from the event mirror: one function per report, each bringing the mirror up to the chain's
head first and computing at that block, so every figure can be traced to mirrored events.

Flows (subsidy, issuance, burns, enterprises served) count events whose block time lies in the period;
budgets and expired value are the state at the report's block.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

from sqlmodel import col, select

from backend.audit import mirror
from backend.audit.report_competition import Competition, competition
from backend.audit.report_figures import (
    CREATED,
    ISSUED,
    MIGRATED,
    RECLAIMED,
    REDEEMED,
    REVOKED,
    Attributes,
    Economic,
    Period,
    Social,
    attributes,
    count_names,
    economic,
    programmes,
    social,
    utc,
)
from backend.chain import logscan
from backend.errors import InvalidInput, NodeUnavailable, NotFound
from backend.models import ChainEvent, MirrorBlock, Participant
from backend.services.context import Context

NAMES = (CREATED, ISSUED, REDEEMED, RECLAIMED, REVOKED, MIGRATED)
SYNC_ATTEMPTS = 3


@dataclass(frozen=True)
class Basis:
    """What a report was computed from: the block, its hash and time, the scope and the events used."""

    block: int
    block_hash: str
    block_time: datetime
    programme_id: int | None
    period: Period
    events: dict[str, int]  # event name -> how many of them the figures rest on

    @property
    def event_count(self) -> int:
        return sum(self.events.values())


@dataclass(frozen=True)
class EconomicReport:
    basis: Basis
    figures: Economic


@dataclass(frozen=True)
class SocialReport:
    basis: Basis
    figures: Social


@dataclass(frozen=True)
class CompetitionReport:
    basis: Basis
    figures: Competition
    hhi_threshold: Fraction
    top_threshold: Fraction
    names: dict[str, tuple[int | None, str]]  # provider address (lower case) -> (participant id, name)


@dataclass(frozen=True)
class _Read:
    block: int
    block_hash: str
    block_time: datetime
    rows: list[ChainEvent]
    period: Period


def _read(ctx: Context, *, programme_id: int | None, since: datetime | None, until: datetime | None) -> _Read:
    period = Period(utc(since) if since else None, utc(until) if until else None)
    if period.since and period.until and period.since >= period.until:
        raise InvalidInput("`from` must be before `until`", field="from")
    for _ in range(SYNC_ATTEMPTS):
        block = mirror.sync(ctx)
        header = logscan.block_headers(ctx.chain.rpc, [block]).get(block)
        with ctx.read() as s:
            mark = s.get(MirrorBlock, block)
            rows = list(
                s.exec(
                    select(ChainEvent)
                    .where(col(ChainEvent.name).in_(NAMES), col(ChainEvent.block_number) <= block)
                    .order_by(col(ChainEvent.block_number), col(ChainEvent.log_index))
                ).all()
            )
        # The mirror and the node must agree on the block, or the chain moved under us: read again.
        if header is not None and (mark is None or mark.hash == header["hash"]):
            break
    else:
        raise NodeUnavailable(f"the chain kept changing under the event mirror at block {block}; try again")
    if programme_id is not None and programme_id not in programmes(rows):
        raise NotFound("programme", programme_id)
    when = datetime.fromtimestamp(int(header["timestamp"], 16), UTC)
    return _Read(block, str(header["hash"]), when, rows, period)


def _basis(read: _Read, programme_id: int | None, used: set[tuple[int, int]]) -> Basis:
    events = count_names(read.rows, used)
    return Basis(read.block, read.block_hash, read.block_time, programme_id, read.period, events)


def economic_report(
    ctx: Context, *, programme_id: int | None = None, since: datetime | None = None, until: datetime | None = None
) -> EconomicReport:
    read = _read(ctx, programme_id=programme_id, since=since, until=until)
    figures = economic(read.rows, programme_id=programme_id, period=read.period, at=read.block_time)
    return EconomicReport(_basis(read, programme_id, figures.used), figures)


def social_report(
    ctx: Context, *, programme_id: int | None = None, since: datetime | None = None, until: datetime | None = None
) -> SocialReport:
    read = _read(ctx, programme_id=programme_id, since=since, until=until)
    with ctx.read() as s:
        enterprises = s.exec(select(Participant).where(Participant.kind == "enterprise")).all()
    known: dict[str, Attributes] = {
        p.address.lower(): attributes(p.industry, p.region_code, p.size) for p in enterprises
    }
    figures = social(read.rows, programme_id=programme_id, period=read.period, known=known)
    return SocialReport(_basis(read, programme_id, figures.used), figures)


def competition_report(
    ctx: Context, *, programme_id: int | None = None, since: datetime | None = None, until: datetime | None = None
) -> CompetitionReport:
    read = _read(ctx, programme_id=programme_id, since=since, until=until)
    hhi_line = Fraction(ctx.settings.hhi_threshold)
    top_line = Fraction(ctx.settings.top3_share_threshold)
    figures = competition(
        read.rows, programme_id=programme_id, period=read.period, hhi_threshold=hhi_line, top_threshold=top_line
    )
    with ctx.read() as s:
        providers = s.exec(select(Participant).where(Participant.kind == "provider")).all()
    names = {p.address.lower(): (p.id, p.name) for p in providers}
    return CompetitionReport(_basis(read, programme_id, figures.used), figures, hhi_line, top_line, names)
