"""What the service's own records say each enterprise holds, to compare with the chain."""

from __future__ import annotations

from collections import defaultdict

from sqlmodel import select

from backend.models import Adjustment, Application, Participant, Redemption
from backend.services.context import Context


def recorded_balances(ctx: Context) -> dict[tuple[int, int], int]:
    """(enterprise id, programme id) -> issued - confirmed redemptions - reclaimed - revoked, from the database."""
    totals: dict[tuple[int, int], int] = defaultdict(int)
    with ctx.read() as s:
        for a in s.exec(select(Application).where(Application.status == "issued")).all():
            totals[(a.enterprise_id, a.programme_id)] += a.approved_amount or 0
        for r in s.exec(select(Redemption).where(Redemption.status == "confirmed")).all():
            totals[(r.enterprise_id, r.programme_id)] -= r.amount
        for adj in s.exec(select(Adjustment)).all():
            totals[(adj.enterprise_id, adj.programme_id)] -= adj.amount
    return dict(totals)


def chain_balances(ctx: Context, keys: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    with ctx.read() as s:
        addresses = {p.id: p.address for p in s.exec(select(Participant)).all()}
    return {(e, p): ctx.chain.balance(addresses[e], p) for e, p in keys}


def differences(ctx: Context) -> list[tuple[int, int, int, int]]:
    """(enterprise, programme, recorded, on chain) for every holding where the two disagree."""
    recorded = recorded_balances(ctx)
    onchain = chain_balances(ctx, list(recorded))
    return [(e, p, recorded[(e, p)], onchain[(e, p)]) for (e, p) in recorded if recorded[(e, p)] != onchain[(e, p)]]
