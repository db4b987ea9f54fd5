"""The two ledgers' arithmetic: pure functions over mirrored events (ChainEvent rows), no database, no chain.

Amounts stay integers in fen and ratios exact Fractions; rounding happens only in `display`. Each result
carries the keys (block, log index) of the events its figures come from, so a report can say how many
events it rests on and a supervisor can find them with the same event names in the audit trail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction

from backend.models import ChainEvent

ISSUED, REDEEMED = "VoucherIssued", "VoucherRedeemed"
RECLAIMED, REVOKED, CREATED = "VoucherReclaimed", "VoucherRevoked", "ProgrammeCreated"
MIGRATED = "VoucherMigrated"
BURNS = (REDEEMED, RECLAIMED, REVOKED)
UNKNOWN = "unknown"  # an address the service has no participant for
UNSPECIFIED = "unspecified"  # a known enterprise that left the attribute empty
EventKey = tuple[int, int]


def utc(dt: datetime) -> datetime:
    """Naive datetimes (SQLite returns them, callers may send them) are UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Period:
    """Block times from `since` (inclusive) to `until` (exclusive); an open end is unbounded."""

    since: datetime | None = None
    until: datetime | None = None

    def __contains__(self, moment: datetime) -> bool:
        t = utc(moment)
        return (self.since is None or t >= utc(self.since)) and (self.until is None or t < utc(self.until))


def key(row: ChainEvent) -> EventKey:
    return (row.block_number, row.log_index)


def amount(row: ChainEvent) -> int:
    """The column is None past int64; the argument always holds the exact value."""
    return row.amount if row.amount is not None else int(str(row.arguments()["amount"]))


def address(value: str | None) -> str:
    return (value or "").lower()


def display(value: Fraction | None, places: int) -> str | None:
    """`value` rounded half-to-even to `places` decimals, computed on integers (no float in between)."""
    if value is None:
        return None
    scaled = round(value * 10**places)
    sign, digits = ("-" if scaled < 0 else ""), str(abs(scaled)).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}" if places else f"{sign}{digits}"


def ratio(numerator: int, denominator: int) -> Fraction | None:
    return Fraction(numerator, denominator) if denominator else None


def count_names(rows: Iterable[ChainEvent], used: set[EventKey]) -> dict[str, int]:
    return dict(sorted(Counter(r.name for r in rows if key(r) in used).items()))


@dataclass(frozen=True)
class Terms:
    """What a programme was created with (from its ProgrammeCreated event)."""

    budget: int
    valid_until: datetime
    event: EventKey


def programmes(rows: Iterable[ChainEvent]) -> dict[int, Terms]:
    found = {}
    for r in rows:
        if r.name == CREATED and r.programme_id is not None:
            a = r.arguments()
            until = datetime.fromtimestamp(int(str(a["validUntil"])), UTC)
            found[r.programme_id] = Terms(int(str(a["budget"])), until, key(r))
    return found


def in_scope(row: ChainEvent, programme_id: int | None) -> bool:
    return programme_id is None or row.programme_id == programme_id


# ---------------------------------------------------------------- economic ledger
@dataclass
class Spend:
    """Redeemed vouchers against invoices: the subsidy and the invoices it paid part of."""

    invoice: int = 0
    subsidy: int = 0
    redemptions: int = 0

    def add(self, *, invoice: int, subsidy: int) -> None:
        self.invoice += invoice
        self.subsidy += subsidy
        self.redemptions += 1

    @property
    def co_payment(self) -> int:
        return self.invoice - self.subsidy

    @property
    def leverage(self) -> Fraction | None:
        """Fen of the enterprises' own money per fen of subsidy."""
        return ratio(self.co_payment, self.subsidy)


@dataclass
class Economic:
    spend: Spend = field(default_factory=Spend)
    issued: int = 0
    reclaimed: int = 0
    revoked: int = 0
    budget: int = 0
    expired: int = 0
    by_category: dict[int, Spend] = field(default_factory=dict)
    used: set[EventKey] = field(default_factory=set)

    @property
    def net_issued(self) -> int:
        """Reclaimed and revoked vouchers went back to the budget, so they do not use it."""
        return self.issued - self.reclaimed - self.revoked


def economic(rows: list[ChainEvent], *, programme_id: int | None, period: Period, at: datetime) -> Economic:
    """Flows within `period`; budget and expiry as they stand at time `at` (the report block's time)."""
    out = Economic()
    terms = {pid: t for pid, t in programmes(rows).items() if programme_id in (None, pid)}
    out.budget = sum(t.budget for t in terms.values())
    out.used.update(t.event for t in terms.values())
    expired_ids = {pid for pid, t in terms.items() if utc(at) >= t.valid_until}
    for r in rows:
        if not in_scope(r, programme_id) or r.name not in (ISSUED, *BURNS):
            continue
        if r.programme_id in expired_ids:  # what is still held after the window closed, at any time up to `at`
            out.expired += amount(r) if r.name == ISSUED else -amount(r)
            out.used.add(key(r))
        if r.block_time not in period:
            continue
        out.used.add(key(r))
        if r.name == ISSUED:
            out.issued += amount(r)
        elif r.name == RECLAIMED:
            out.reclaimed += amount(r)
        elif r.name == REVOKED:
            out.revoked += amount(r)
        else:
            a = r.arguments()
            invoice, category = int(str(a["invoiceAmount"])), int(str(a["category"]))
            out.spend.add(invoice=invoice, subsidy=amount(r))
            out.by_category.setdefault(category, Spend()).add(invoice=invoice, subsidy=amount(r))
    return out


# ---------------------------------------------------------------- social ledger
@dataclass(frozen=True)
class Attributes:
    industry: str
    region_code: str
    size: str


UNKNOWN_ATTRIBUTES = Attributes(UNKNOWN, UNKNOWN, UNKNOWN)
DIMENSIONS = ("industry", "region_code", "size")


def attributes(industry: str, region_code: str, size: str) -> Attributes:
    return Attributes(industry or UNSPECIFIED, region_code or UNSPECIFIED, size or UNSPECIFIED)


@dataclass
class Group:
    served: set[str] = field(default_factory=set)
    issued: set[str] = field(default_factory=set)
    first_time: set[str] = field(default_factory=set)
    subsidy: int = 0


@dataclass
class Social:
    served: set[str] = field(default_factory=set)
    issued: set[str] = field(default_factory=set)
    first_time: set[str] = field(default_factory=set)
    subsidy: int = 0
    groups: dict[str, dict[str, Group]] = field(default_factory=lambda: {d: {} for d in DIMENSIONS})
    used: set[EventKey] = field(default_factory=set)


def successors(rows: Iterable[ChainEvent]) -> dict[str, str]:
    """Retired managed address -> the one that replaced it (VoucherMigrated): one enterprise, one identity."""
    moved = {address(str(r.arguments()["from"])): address(str(r.arguments()["to"])) for r in rows if r.name == MIGRATED}
    resolved = {}
    for old in moved:
        new, seen = moved[old], {old}
        while new in moved and new not in seen:
            seen.add(new)
            new = moved[new]
        resolved[old] = new
    return resolved


def social(
    rows: list[ChainEvent], *, programme_id: int | None, period: Period, known: Mapping[str, Attributes]
) -> Social:
    """`known`: lower-case managed address -> the enterprise's attributes; others count as "unknown"."""
    out = Social()
    alias = successors(rows)
    first: dict[str, ChainEvent] = {}  # each enterprise's first-ever redemption, in any programme
    for r in rows:
        if r.name != REDEEMED:
            continue
        who = alias.get(address(r.account), address(r.account))
        if who not in first or key(r) < key(first[who]):
            first[who] = r
    for r in rows:
        if r.name not in (ISSUED, REDEEMED) or not in_scope(r, programme_id) or r.block_time not in period:
            continue
        out.used.add(key(r))
        who = alias.get(address(r.account), address(r.account))
        attrs = known.get(who, UNKNOWN_ATTRIBUTES)
        groups = [out.groups[d].setdefault(getattr(attrs, d), Group()) for d in DIMENSIONS]
        if r.name == ISSUED:
            out.issued.add(who)
            for g in groups:
                g.issued.add(who)
            continue
        out.served.add(who)
        out.subsidy += amount(r)
        is_first = first[who].block_time in period
        if is_first:
            out.first_time.add(who)
        for g in groups:
            g.served.add(who)
            g.subsidy += amount(r)
            if is_first:
                g.first_time.add(who)
    out.used.update(key(first[who]) for who in out.served)  # the evidence for "first-time" or not
    return out
