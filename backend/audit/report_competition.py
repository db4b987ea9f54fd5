"""Fair competition among providers: shares of redeemed value, the Herfindahl–Hirschman index, the top-3 share,
and the flag a supervisor looks at first. Pure and exact: Fractions throughout, rounding left to display."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from backend.audit.report_figures import REDEEMED, EventKey, Period, address, amount, display, in_scope, key
from backend.models import ChainEvent

HHI_MAX = 10_000  # one provider takes everything: (100%)²
TOP_N = 3


def hhi(values: Sequence[int]) -> Fraction:
    """Sum of squared percentage shares, 0 to 10,000; 0 when nothing was redeemed."""
    total = sum(values)
    if total == 0:
        return Fraction(0)
    return Fraction(HHI_MAX * sum(v * v for v in values), total * total)


def top_share(values: Sequence[int], n: int = TOP_N) -> Fraction:
    """Share (0 to 1) of the `n` largest; 0 when nothing was redeemed."""
    total = sum(values)
    return Fraction(sum(sorted(values, reverse=True)[:n]), total) if total else Fraction(0)


@dataclass(frozen=True)
class Flag:
    measure: Literal["hhi", "top3_share"]
    value: Fraction
    threshold: Fraction
    reason: str


def flags(index: Fraction, top: Fraction, *, hhi_threshold: Fraction, top_threshold: Fraction) -> list[Flag]:
    """A flag for each measure strictly above its threshold (a market exactly at the line is not flagged)."""
    found = []
    if index > hhi_threshold:
        reason = f"HHI {display(index, 2)} exceeds the threshold {display(hhi_threshold, 2)}: a concentrated market"
        found.append(Flag("hhi", index, hhi_threshold, reason))
    if top > top_threshold:
        took, line = display(top * 100, 2), display(top_threshold * 100, 2)
        reason = f"the top {TOP_N} providers took {took}% of redeemed value, above the threshold {line}%"
        found.append(Flag("top3_share", top, top_threshold, reason))
    return found


@dataclass
class ProviderFigures:
    provider: str  # the address as the event has it
    redeemed: int = 0
    redemptions: int = 0


@dataclass
class Competition:
    providers: list[ProviderFigures]  # largest redeemed value first
    hhi: Fraction
    top_share: Fraction
    flags: list[Flag]
    used: set[EventKey] = field(default_factory=set)

    @property
    def redeemed(self) -> int:
        return sum(p.redeemed for p in self.providers)

    @property
    def redemptions(self) -> int:
        return sum(p.redemptions for p in self.providers)


def competition(
    rows: list[ChainEvent],
    *,
    programme_id: int | None,
    period: Period,
    hhi_threshold: Fraction,
    top_threshold: Fraction,
) -> Competition:
    by_provider: dict[str, ProviderFigures] = {}
    used = set()
    for r in rows:
        if r.name != REDEEMED or not in_scope(r, programme_id) or r.block_time not in period:
            continue
        used.add(key(r))
        p = by_provider.setdefault(address(r.provider), ProviderFigures(r.provider or ""))
        p.redeemed, p.redemptions = p.redeemed + amount(r), p.redemptions + 1
    ranked = sorted(by_provider.values(), key=lambda p: (-p.redeemed, -p.redemptions, p.provider.lower()))
    values = [p.redeemed for p in ranked]
    index, top = hhi(values), top_share(values)
    found = flags(index, top, hhi_threshold=hhi_threshold, top_threshold=top_threshold)
    return Competition(providers=ranked, hhi=index, top_share=top, flags=found, used=used)
