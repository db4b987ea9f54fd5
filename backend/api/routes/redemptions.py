"""Redemptions: providers claim, enterprises confirm (the burn happens on chain) or refuse."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from backend.api.deps import STAFF, CtxDep, CurrentActor, EnterpriseActor, ProviderActor
from backend.api.idempotency import IdempotencyDep
from backend.api.ratelimit import RATE_LIMITED, limit
from backend.api.schemas import Count, Id, RedemptionCreate, RedemptionPublic, RefuseRequest
from backend.errors import NotFound
from backend.models import Redemption
from backend.services import redemptions
from backend.services.apikeys import Actor
from backend.services.finished import Finished
from backend.services.participants import category_names

router = APIRouter(prefix="/v1/redemptions", tags=["redemptions"])


def public(r: Redemption) -> RedemptionPublic:
    data = r.model_dump(exclude={"category", "consent_nonce", "deadline"})
    return RedemptionPublic(**data, category=category_names(1 << r.category)[0])


def _visible(actor: Actor, r: Redemption) -> Redemption:
    mine = (actor.role == "provider" and actor.participant_id == r.provider_id) or (
        actor.role == "enterprise" and actor.participant_id == r.enterprise_id
    )
    if actor.role not in STAFF and not mine:
        raise NotFound("redemption", r.id)
    return r


@router.post(
    "",
    status_code=201,
    response_model=RedemptionPublic,
    responses=RATE_LIMITED,
    dependencies=[Depends(limit("redemptions"))],
)
async def claim(body: RedemptionCreate, ctx: CtxDep, actor: ProviderActor, idem: IdempotencyDep) -> JSONResponse:
    provider_id = actor.participant_id
    assert provider_id is not None  # provider keys always carry their participant (create_api_key)

    async def act() -> RedemptionPublic:
        made = await redemptions.claim(
            ctx,
            provider_id=provider_id,
            enterprise_id=body.enterprise_id,
            programme_id=body.programme_id,
            invoice_number=body.invoice_number,
            invoice_amount=body.invoice_amount,
            category=body.category,
            amount=body.amount,
        )
        return public(made)

    return await idem.run_async(act, status_code=201)


@router.get("", response_model=list[RedemptionPublic])
def list_redemptions(
    ctx: CtxDep, actor: CurrentActor, status: str | None = None, offset: Count = 0, limit: int = 100
) -> list[RedemptionPublic]:
    scope = (
        {"provider_id": actor.participant_id}
        if actor.role == "provider"
        else ({"enterprise_id": actor.participant_id} if actor.role == "enterprise" else {})
    )
    rows = redemptions.list_for(ctx, status=status, offset=max(offset, 0), limit=min(max(limit, 1), 500), **scope)
    return [public(r) for r in rows]


@router.get("/{redemption_id:int}", response_model=RedemptionPublic)
def get_redemption(redemption_id: Id, ctx: CtxDep, actor: CurrentActor) -> RedemptionPublic:
    return public(_visible(actor, redemptions.get(ctx, redemption_id)))


@router.post("/{redemption_id:int}/confirm", response_model=RedemptionPublic)
async def confirm(redemption_id: Id, ctx: CtxDep, actor: EnterpriseActor, idem: IdempotencyDep) -> JSONResponse:
    enterprise_id = actor.participant_id
    assert enterprise_id is not None  # enterprise keys always carry their participant

    async def act() -> Finished[RedemptionPublic]:
        done = await redemptions.confirm(ctx, redemption_id=redemption_id, enterprise_id=enterprise_id)
        return Finished(public(done.value), done.pending)

    return await idem.run_async(act)


@router.post("/{redemption_id:int}/refuse", response_model=RedemptionPublic)
def refuse(
    redemption_id: Id, body: RefuseRequest, ctx: CtxDep, actor: EnterpriseActor, idem: IdempotencyDep
) -> JSONResponse:
    r = redemptions.get(ctx, redemption_id)
    if r.enterprise_id != actor.participant_id:
        raise NotFound("redemption", redemption_id)
    return idem.run(lambda: public(redemptions.refuse(ctx, redemption_id=redemption_id, reason=body.reason)))
