"""Programmes: created on chain by the admin, mirrored here, read back with live figures from the chain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection
from sqlmodel import col, select

from backend.chain.ledger import ProgrammeState
from backend.chain.txtypes import StoredTx, TxOutcome
from backend.errors import InvalidInput
from backend.models import Participant, Programme, ProgrammeProvider, unix_time, utcnow
from backend.models.states import TxKind
from backend.services import participants
from backend.services.context import Context

MAX_FEN = 2**127  # the contract keeps budgets in uint128
_PROGRAMMES: Table = Programme.__table__  # type: ignore[attr-defined]
_LINKS: Table = ProgrammeProvider.__table__  # type: ignore[attr-defined]
_PARTICIPANTS: Table = Participant.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ProgrammeView:
    row: Programme
    state: ProgrammeState
    provider_ids: list[int]


@dataclass(frozen=True)
class Balance:
    programme_id: int
    balance: int


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
    start, end = unix_time(valid_from), unix_time(valid_until)
    if start < 0:  # the chain keeps windows as unsigned seconds since 1970
        raise InvalidInput("valid_from must not be before 1970-01-01T00:00:00Z", field="valid_from")
    if end <= start or end <= ctx.chain.now():
        raise InvalidInput("valid_until must be after valid_from and in the future", field="valid_until")
    mask = participants.categories_mask(categories)
    if mask == 0:
        raise InvalidInput("a programme needs at least one compute category", field="categories")
    with ctx.read() as s:
        providers = [s.get(Participant, pid) for pid in provider_ids]
    if any(p is None or p.kind != "provider" for p in providers):
        raise InvalidInput("provider_ids must all be registered providers", field="provider_ids")
    params = (budget, cap_per_enterprise, ratio_bps, start, end, mask, [p.address for p in providers if p])
    sent = ctx.chain.send(ctx.operators["admin"], "createProgramme", params, kind=TxKind.CREATE_PROGRAMME, ref=name)
    return get(ctx, int(sent.value))  # the id the completion handler, `created`, recorded


def created(conn: Connection, tx: StoredTx, outcome: TxOutcome) -> int:
    """Mirrors a programme from its creation events (the completion handler); returns its id."""
    events = outcome.events()
    made = next(ev.args for ev in events if ev.name == "ProgrammeCreated")
    programme_id = int(made["programmeId"])
    if conn.execute(select(_PROGRAMMES.c.id).where(_PROGRAMMES.c.id == programme_id)).first() is not None:
        return programme_id
    conn.execute(
        insert(_PROGRAMMES).values(
            id=programme_id,
            name=tx.ref,
            ratio_bps=int(made["ratioBps"]),
            budget=int(made["budget"]),
            cap_per_enterprise=int(made["capPerEnterprise"]),
            valid_from=datetime.fromtimestamp(int(made["validFrom"]), UTC),
            valid_until=datetime.fromtimestamp(int(made["validUntil"]), UTC),
            categories=int(made["categories"]),
            tx_hash=outcome.tx_hash,
            created_at=utcnow(),
        )
    )
    allowed = [ev.args["provider"] for ev in events if ev.name == "ProgrammeProviderSet" and ev.args["allowed"]]
    ids: dict[str, int] = dict(conn.execute(select(_PARTICIPANTS.c.address, _PARTICIPANTS.c.id).where(
        _PARTICIPANTS.c.address.in_(allowed))).all())  # fmt: skip
    for address in dict.fromkeys(allowed):
        conn.execute(insert(_LINKS).values(programme_id=programme_id, provider_id=ids[address]))
    return programme_id


def get_row(ctx: Context, programme_id: int) -> Programme:
    return ctx.fetch(Programme, programme_id, "programme")


def provider_ids(ctx: Context, programme_id: int) -> list[int]:
    with ctx.read() as s:
        q = select(ProgrammeProvider.provider_id).where(ProgrammeProvider.programme_id == programme_id)
        return sorted(s.exec(q).all())


def get(ctx: Context, programme_id: int) -> ProgrammeView:
    row = get_row(ctx, programme_id)
    return ProgrammeView(row=row, state=ctx.chain.programme(programme_id), provider_ids=provider_ids(ctx, programme_id))


def _ids(ctx: Context) -> list[int]:
    with ctx.read() as s:
        return [i for i in s.exec(select(Programme.id).order_by(col(Programme.id))).all() if i is not None]


def list_all(ctx: Context) -> list[ProgrammeView]:
    return [get(ctx, i) for i in _ids(ctx)]


def balances(ctx: Context, *, enterprise_id: int) -> list[Balance]:
    """The enterprise's balance in every programme (zero where it holds none), read in one call to the chain."""
    enterprise = participants.get(ctx, enterprise_id, kind="enterprise")
    ids = _ids(ctx)
    return [Balance(pid, b) for pid, b in zip(ids, ctx.chain.balances(enterprise.address, ids), strict=True)]
