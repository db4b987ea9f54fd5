"""Report bodies, and their CSV form: the same content as the JSON, one table with a header row.

Every report is `meta` (the block, the scope, the rounding), `totals`, and lists of rows that each start with
a `key`; the CSV has the columns section, key, field, value and one row per value of the JSON.
Amounts are integers in fen. Ratios come twice: `*_exact` is the exact fraction ("3/8"), the plain field the
same value rounded half-to-even for display (see `meta.rounding`).
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, Field

from backend.audit.report_figures import Group, Spend, display
from backend.audit.reports import Basis, CompetitionReport, EconomicReport, SocialReport
from backend.services.participants import CATEGORIES

RATIO_PLACES, HHI_PLACES = 4, 2
ROUNDING = (
    f"exact fractions in *_exact fields; displayed ratios and shares rounded half-to-even to {RATIO_PLACES} "
    f"decimal places, HHI to {HHI_PLACES}"
)
CATEGORY_NAMES = {bit: name for name, bit in CATEGORIES.items()}


class ReportMeta(BaseModel):
    report: Literal["economic", "social", "competition"]
    block: int = Field(description="the mirror was consistent with the chain at this block")
    block_hash: str
    block_time: datetime
    programme_id: int | None = Field(description="None: all programmes")
    period_from: datetime | None = Field(description="block times from this instant (inclusive)")
    period_until: datetime | None = Field(description="up to this instant (exclusive)")
    event_count: int = Field(description="mirrored events the figures were computed from")
    rounding: str = ROUNDING


class EventCount(BaseModel):
    key: str = Field(description="contract event name, as in the audit trail's `event` filter")
    count: int


class Report(BaseModel):
    meta: ReportMeta
    events: list[EventCount]


class EconomicTotals(BaseModel):
    subsidy: int = Field(description="sum of VoucherRedeemed amounts")
    invoice_total: int
    co_payment: int = Field(description="invoice total - subsidy: the enterprises' own money")
    leverage: str | None = Field(description="co-payment per unit of subsidy; None without redemptions")
    leverage_exact: str | None
    redemptions: int
    issued: int
    reclaimed: int
    revoked: int
    net_issued: int = Field(description="issued - reclaimed - revoked")
    budget: int = Field(description="budgets of the programmes in scope")
    net_issued_utilisation: str | None = Field(description="net issued / budget")
    net_issued_utilisation_exact: str | None
    redeemed_utilisation: str | None = Field(description="subsidy / budget")
    redeemed_utilisation_exact: str | None
    expired: int = Field(description="held in programmes whose window had closed by the block, not reclaimed")


class CategoryRow(BaseModel):
    key: str = Field(description="compute category name")
    category: int
    invoice_total: int
    subsidy: int
    co_payment: int
    redemptions: int


class EconomicPublic(Report):
    totals: EconomicTotals
    by_category: list[CategoryRow]


class SocialTotals(BaseModel):
    enterprises_served: int = Field(description="distinct enterprises with a redemption in the period")
    enterprises_issued: int = Field(description="distinct enterprises issued vouchers in the period")
    first_time_users: int = Field(description="served enterprises whose first-ever redemption is in the period")
    subsidy: int


class GroupRow(BaseModel):
    key: str = Field(description='the attribute\'s value; "unknown" for an address the service does not know')
    enterprises_served: int
    enterprises_issued: int
    first_time_users: int
    subsidy: int


class SocialPublic(Report):
    totals: SocialTotals
    by_industry: list[GroupRow]
    by_region: list[GroupRow]
    by_size: list[GroupRow]


class CompetitionTotals(BaseModel):
    redeemed: int
    redemptions: int
    providers: int
    hhi: str = Field(description="sum of squared percentage shares of redeemed value, 0-10,000")
    hhi_exact: str
    top3_share: str = Field(description="share of redeemed value of the three largest providers, 0-1")
    top3_share_exact: str
    hhi_threshold: str
    top3_share_threshold: str
    flagged: bool


class ProviderRow(BaseModel):
    key: str = Field(description="provider address")
    provider_id: int | None
    name: str
    redeemed: int
    redemptions: int
    share: str
    share_exact: str
    count_share: str
    count_share_exact: str


class FlagRow(BaseModel):
    key: Literal["hhi", "top3_share"]
    value: str
    threshold: str
    reason: str


class CompetitionPublic(Report):
    totals: CompetitionTotals
    providers: list[ProviderRow]
    flags: list[FlagRow]


def _meta(report: Literal["economic", "social", "competition"], b: Basis) -> ReportMeta:
    return ReportMeta(
        report=report,
        block=b.block,
        block_hash=b.block_hash,
        block_time=b.block_time,
        programme_id=b.programme_id,
        period_from=b.period.since,
        period_until=b.period.until,
        event_count=b.event_count,
    )


def _events(b: Basis) -> list[EventCount]:
    return [EventCount(key=name, count=n) for name, n in b.events.items()]


def _exact(value: Fraction | None) -> str | None:
    return None if value is None else str(value)


def _share(part: int, whole: int) -> tuple[str, str]:
    exact = Fraction(part, whole) if whole else Fraction(0)
    return display(exact, RATIO_PLACES) or "", str(exact)


def economic_public(r: EconomicReport) -> EconomicPublic:
    f, spend = r.figures, r.figures.spend
    net_use = Fraction(f.net_issued, f.budget) if f.budget else None
    redeemed_use = Fraction(spend.subsidy, f.budget) if f.budget else None
    totals = EconomicTotals(
        subsidy=spend.subsidy,
        invoice_total=spend.invoice,
        co_payment=spend.co_payment,
        leverage=display(spend.leverage, RATIO_PLACES),
        leverage_exact=_exact(spend.leverage),
        redemptions=spend.redemptions,
        issued=f.issued,
        reclaimed=f.reclaimed,
        revoked=f.revoked,
        net_issued=f.net_issued,
        budget=f.budget,
        net_issued_utilisation=display(net_use, RATIO_PLACES),
        net_issued_utilisation_exact=_exact(net_use),
        redeemed_utilisation=display(redeemed_use, RATIO_PLACES),
        redeemed_utilisation_exact=_exact(redeemed_use),
        expired=f.expired,
    )
    return EconomicPublic(
        meta=_meta("economic", r.basis),
        events=_events(r.basis),
        totals=totals,
        by_category=[_category(n, c) for n, c in sorted(f.by_category.items())],
    )


def _category(number: int, c: Spend) -> CategoryRow:
    return CategoryRow(
        key=CATEGORY_NAMES.get(number, f"category {number}"),
        category=number,
        invoice_total=c.invoice,
        subsidy=c.subsidy,
        co_payment=c.co_payment,
        redemptions=c.redemptions,
    )


def _groups(groups: dict[str, Group]) -> list[GroupRow]:
    rows = [
        GroupRow(
            key=value,
            enterprises_served=len(g.served),
            enterprises_issued=len(g.issued),
            first_time_users=len(g.first_time),
            subsidy=g.subsidy,
        )
        for value, g in groups.items()
    ]
    return sorted(rows, key=lambda g: (-g.subsidy, -g.enterprises_served, g.key))


def social_public(r: SocialReport) -> SocialPublic:
    f = r.figures
    totals = SocialTotals(
        enterprises_served=len(f.served),
        enterprises_issued=len(f.issued),
        first_time_users=len(f.first_time),
        subsidy=f.subsidy,
    )
    return SocialPublic(
        meta=_meta("social", r.basis),
        events=_events(r.basis),
        totals=totals,
        by_industry=_groups(f.groups["industry"]),
        by_region=_groups(f.groups["region_code"]),
        by_size=_groups(f.groups["size"]),
    )


def competition_public(r: CompetitionReport) -> CompetitionPublic:
    f = r.figures
    rows = []
    for p in f.providers:
        provider_id, name = r.names.get(p.provider.lower(), (None, "unknown"))
        share, share_exact = _share(p.redeemed, f.redeemed)
        count_share, count_exact = _share(p.redemptions, f.redemptions)
        rows.append(
            ProviderRow(
                key=p.provider,
                provider_id=provider_id,
                name=name,
                redeemed=p.redeemed,
                redemptions=p.redemptions,
                share=share,
                share_exact=share_exact,
                count_share=count_share,
                count_share_exact=count_exact,
            )
        )
    places = {"hhi": HHI_PLACES, "top3_share": RATIO_PLACES}
    totals = CompetitionTotals(
        redeemed=f.redeemed,
        redemptions=f.redemptions,
        providers=len(f.providers),
        hhi=display(f.hhi, HHI_PLACES) or "",
        hhi_exact=str(f.hhi),
        top3_share=display(f.top_share, RATIO_PLACES) or "",
        top3_share_exact=str(f.top_share),
        hhi_threshold=display(r.hhi_threshold, HHI_PLACES) or "",
        top3_share_threshold=display(r.top_threshold, RATIO_PLACES) or "",
        flagged=bool(f.flags),
    )
    flags = [
        FlagRow(
            key=g.measure,
            value=display(g.value, places[g.measure]) or "",
            threshold=display(g.threshold, places[g.measure]) or "",
            reason=g.reason,
        )
        for g in f.flags
    ]
    return CompetitionPublic(
        meta=_meta("competition", r.basis), events=_events(r.basis), totals=totals, providers=rows, flags=flags
    )
