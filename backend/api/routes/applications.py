"""Applications: enterprises apply; issuers approve (issuing on chain) or reject with a reason."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from backend.api.deps import CtxDep, CurrentActor, EnterpriseActor, Issuer, ensure_owner_or_staff, require
from backend.api.idempotency import IdempotencyDep
from backend.api.ratelimit import RATE_LIMITED, limit
from backend.api.schemas import (
    ApplicationCreate,
    ApplicationPublic,
    ApproveRequest,
    BatchApproveRequest,
    Id,
    RejectRequest,
)
from backend.errors import InvalidInput
from backend.models import Application
from backend.services import applications

router = APIRouter(prefix="/v1/applications", tags=["applications"])


def public(a: Application) -> ApplicationPublic:
    return ApplicationPublic(**a.model_dump())


@router.post(
    "",
    status_code=201,
    response_model=ApplicationPublic,
    responses=RATE_LIMITED,
    dependencies=[Depends(limit("applications"))],
)
def apply(body: ApplicationCreate, ctx: CtxDep, actor: EnterpriseActor, idem: IdempotencyDep) -> JSONResponse:
    if body.enterprise_id not in (None, actor.participant_id):
        raise InvalidInput("an enterprise applies for itself only", field="enterprise_id")
    enterprise_id = actor.participant_id
    assert enterprise_id is not None
    return idem.run(
        lambda: public(
            applications.apply(
                ctx,
                enterprise_id=enterprise_id,
                programme_id=body.programme_id,
                amount=body.amount,
                purpose=body.purpose,
            )
        ),
        status_code=201,
    )


@router.get("", response_model=list[ApplicationPublic])
def list_applications(
    ctx: CtxDep, actor: CurrentActor, programme_id: Id | None = None, status: str | None = None
) -> list[ApplicationPublic]:
    if actor.role == "provider":
        return []
    own = actor.participant_id if actor.role == "enterprise" else None
    rows = applications.list_for(ctx, enterprise_id=own, programme_id=programme_id, status=status)
    return [public(a) for a in rows]


@router.get("/{application_id:int}", response_model=ApplicationPublic)
def get_application(application_id: Id, ctx: CtxDep, actor: CurrentActor) -> ApplicationPublic:
    a = applications.get(ctx, application_id)
    ensure_owner_or_staff(actor, a.enterprise_id, "application", application_id)
    if actor.role == "provider":
        ensure_owner_or_staff(actor, -1, "application", application_id)
    return public(a)


@router.post("/{application_id:int}/approve", response_model=ApplicationPublic)
def approve(application_id: Id, body: ApproveRequest, ctx: CtxDep, _: Issuer, idem: IdempotencyDep) -> JSONResponse:
    return idem.run(lambda: public(applications.approve(ctx, application_id=application_id, amount=body.amount)))


@router.post("/{application_id:int}/reject", response_model=ApplicationPublic)
def reject(application_id: Id, body: RejectRequest, ctx: CtxDep, _: Issuer, idem: IdempotencyDep) -> JSONResponse:
    return idem.run(lambda: public(applications.reject(ctx, application_id=application_id, reason=body.reason)))


@router.post("/approve-batch", response_model=list[ApplicationPublic], dependencies=[Depends(require("issuer"))])
def approve_batch(body: BatchApproveRequest, ctx: CtxDep, idem: IdempotencyDep) -> JSONResponse:
    approvals: dict[int, int | None] = dict.fromkeys(body.application_ids)
    return idem.run(lambda: [public(a) for a in applications.approve_batch(ctx, approvals=approvals)])
