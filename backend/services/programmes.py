"""Programmes: created on chain by the admin, mirrored here, read back with live figures from the chain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, select

from backend.chain.ledger import ProgrammeState
from backend.errors import InvalidInput, NotFound
from backend.models import Participant, Programme, ProgrammeProvider
from backend.services.context import Context
from backend.services.participants import categories_mask

MAX_FEN = 2**127  # the contract keeps budgets in uint128


@dataclass(frozen=True)
class ProgrammeView:
    row: Programme
    state: ProgrammeState
    provider_ids: list[int]


def _ts(dt: datetime) -> int:
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())


def create(
    ctx: Context,
    *,
    name: str,
    ratio_bps: int,
    budget: int,
    cap_per_enterprise: int,
    valid_from: datetime,
    valid_until: datetime,
    categories: list[str],
    provider_ids: list[int],
) -> ProgrammeView:
    if not 1 <= ratio_bps <= 10_000:
        raise InvalidInput("ratio_bps must be between 1 and 10000 (0.01% to 100%)", field="ratio_bps")
    if not 0 < cap_per_enterprise <= budget < MAX_FEN:
        raise InvalidInput("need 0 < cap_per_enterprise <= budget (amounts in fen)", field="budget")
    start, end = _ts(valid_from), _ts(valid_until)
    if end <= start or end <= ctx.chain.now():
        raise InvalidInput("valid_until must be after valid_from and in the future", field="valid_until")
    mask = categories_mask(categories)
    if mask == 0:
        raise InvalidInput("a programme needs at least one compute category", field="categories")
    with Session(ctx.engine, expire_on_commit=False) as s:
        providers = [s.get(Participant, pid) for pid in provider_ids]
    if any(p is None or p.kind != "provider" for p in providers):
        raise InvalidInput("provider_ids must all be registered providers", field="provider_ids")
    params = (budget, cap_per_enterprise, ratio_bps, start, end, mask, [p.address for p in providers if p])
    outcome = ctx.chain.send(ctx.operators["admin"], "createProgramme", params, kind="create_programme", ref=name)
    created = next(ev for ev in ctx.chain.decode_logs(outcome) if ev.name == "ProgrammeCreated")
    programme_id = int(created.args["programmeId"])
    row = Programme(
        id=programme_id,
        name=name,
        ratio_bps=ratio_bps,
        budget=budget,
        cap_per_enterprise=cap_per_enterprise,
        valid_from=_utc(valid_from),
        valid_until=_utc(valid_until),
        categories=mask,
        tx_hash=outcome.tx_hash,
    )
    with Session(ctx.engine, expire_on_commit=False) as s:
        s.add(row)
        for pid in dict.fromkeys(provider_ids):
            s.add(ProgrammeProvider(programme_id=programme_id, provider_id=pid))
        s.commit()
    return get(ctx, programme_id)


def _utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


def get_row(ctx: Context, programme_id: int) -> Programme:
    with Session(ctx.engine, expire_on_commit=False) as s:
        row = s.get(Programme, programme_id)
    if row is None:
        raise NotFound("programme", programme_id)
    return row


def provider_ids(ctx: Context, programme_id: int) -> list[int]:
    with Session(ctx.engine, expire_on_commit=False) as s:
        q = select(ProgrammeProvider.provider_id).where(ProgrammeProvider.programme_id == programme_id)
        return sorted(s.exec(q).all())


def get(ctx: Context, programme_id: int) -> ProgrammeView:
    row = get_row(ctx, programme_id)
    return ProgrammeView(row=row, state=ctx.chain.programme(programme_id), provider_ids=provider_ids(ctx, programme_id))


def list_all(ctx: Context) -> list[ProgrammeView]:
    with Session(ctx.engine, expire_on_commit=False) as s:
        ids = list(s.exec(select(Programme.id).order_by(Programme.id)).all())  # type: ignore[arg-type]
    return [get(ctx, i) for i in ids]
