"""Supervision actions: revoke with a reason code, pause and resume the ledger."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from backend.api.deps import Admin, CtxDep, CurrentActor, Supervisor, require
from backend.api.idempotency import IdempotencyDep
from backend.api.schemas import ChainActionPublic, RevokeRequest
from backend.services import supervision

router = APIRouter(prefix="/v1", tags=["supervision"])


@router.post("/revocations", response_model=ChainActionPublic)
def revoke(body: RevokeRequest, ctx: CtxDep, _: Supervisor, idem: IdempotencyDep) -> JSONResponse:
    return idem.run(
        lambda: ChainActionPublic(
            **supervision.revoke(
                ctx,
                programme_id=body.programme_id,
                enterprise_id=body.enterprise_id,
                amount=body.amount,
                reason_code=body.reason_code,
            ).__dict__
        )
    )


@router.post("/pause", response_model=ChainActionPublic, dependencies=[Depends(require("admin", "supervisor"))])
def pause(ctx: CtxDep, actor: CurrentActor, idem: IdempotencyDep) -> JSONResponse:
    return idem.run(lambda: ChainActionPublic(**supervision.set_paused(ctx, paused=True, role=actor.role).__dict__))


@router.post("/unpause", response_model=ChainActionPublic)
def unpause(ctx: CtxDep, actor: Admin, idem: IdempotencyDep) -> JSONResponse:
    return idem.run(lambda: ChainActionPublic(**supervision.set_paused(ctx, paused=False, role=actor.role).__dict__))
