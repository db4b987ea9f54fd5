"""Programmes with live figures from the chain; reclaim after expiry; balances."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backend.api.deps import Admin, CtxDep, CurrentActor, Issuer, ensure_owner_or_staff
from backend.api.idempotency import IdempotencyDep
from backend.api.schemas import BalancePublic, ChainActionPublic, Id, ProgrammeCreate, ProgrammePublic
from backend.services import programmes, supervision
from backend.services.participants import category_names
from backend.services.programmes import ProgrammeView

router = APIRouter(prefix="/v1", tags=["programmes"])


def public(v: ProgrammeView) -> ProgrammePublic:
    r, st = v.row, v.state
    return ProgrammePublic(
        id=r.id,
        name=r.name,
        ratio_bps=r.ratio_bps,
        budget=r.budget,
        cap_per_enterprise=r.cap_per_enterprise,
        valid_from=r.valid_from,
        valid_until=r.valid_until,
        categories=category_names(r.categories),
        provider_ids=v.provider_ids,
        issued=st.issued,
        redeemed=st.redeemed,
        reclaimed=st.reclaimed,
        revoked=st.revoked,
        outstanding=st.outstanding,
        remaining=st.available,
        tx_hash=r.tx_hash,
    )


@router.post("/programmes", status_code=201, response_model=ProgrammePublic)
def create_programme(body: ProgrammeCreate, ctx: CtxDep, _: Admin, idem: IdempotencyDep) -> JSONResponse:
    return idem.run(
        lambda: public(
            programmes.create(
                ctx,
                name=body.name,
                ratio_bps=body.ratio_bps,
                budget=body.budget,
                cap_per_enterprise=body.cap_per_enterprise,
                valid_from=body.valid_from,
                valid_until=body.valid_until,
                categories=list(body.categories),
                provider_ids=body.provider_ids,
            )
        ),
        status_code=201,
    )


@router.get("/programmes", response_model=list[ProgrammePublic])
def list_programmes(ctx: CtxDep, _: CurrentActor) -> list[ProgrammePublic]:
    return [public(v) for v in programmes.list_all(ctx)]


@router.get("/programmes/{programme_id:int}", response_model=ProgrammePublic)
def get_programme(programme_id: Id, ctx: CtxDep, _: CurrentActor) -> ProgrammePublic:
    return public(programmes.get(ctx, programme_id))


@router.post("/programmes/{programme_id:int}/reclaim", response_model=ChainActionPublic)
def reclaim(programme_id: Id, ctx: CtxDep, _: Issuer, idem: IdempotencyDep) -> JSONResponse:
    return idem.run(lambda: ChainActionPublic(**supervision.reclaim(ctx, programme_id=programme_id).__dict__))


@router.get("/enterprises/{enterprise_id:int}/balances", response_model=list[BalancePublic])
def balances(enterprise_id: Id, ctx: CtxDep, actor: CurrentActor) -> list[BalancePublic]:
    ensure_owner_or_staff(actor, enterprise_id, "enterprise", enterprise_id)
    return [
        BalancePublic(enterprise_id=enterprise_id, programme_id=b.programme_id, balance=b.balance)
        for b in programmes.balances(ctx, enterprise_id=enterprise_id)
    ]
