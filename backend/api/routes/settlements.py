"""Settlement batches (兑付): a provider (or finance for it) submits a period's confirmed redemptions; finance
approves (the batch's digest is anchored on chain) or returns it; anyone entitled exports it as JSON or CSV."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from backend.api.deps import CtxDep, require
from backend.api.idempotency import IdempotencyDep
from backend.api.schemas import Count, Id
from backend.api.schemas_settlement import (
    SettlementCreate,
    SettlementDetail,
    SettlementLinePublic,
    SettlementPublic,
    SettlementReturnRequest,
    SettlementStatus,
)
from backend.errors import NotFound
from backend.models import SettlementBatch
from backend.services import settlement_document, settlements
from backend.services.apikeys import Actor
from backend.services.context import Context
from backend.services.finished import Finished

router = APIRouter(prefix="/v1/settlements", tags=["settlements"])

Submitter = Annotated[Actor, Depends(require("provider", "finance"))]
Viewer = Annotated[Actor, Depends(require("admin", "finance", "supervisor", "provider"))]
Finance = Annotated[Actor, Depends(require("finance"))]


def public(b: SettlementBatch) -> SettlementPublic:
    return SettlementPublic(**b.model_dump(exclude={"document"}))


def detail(b: SettlementBatch) -> SettlementDetail:
    return SettlementDetail(
        **b.model_dump(exclude={"document"}),
        lines=[SettlementLinePublic.model_validate(line) for line in settlement_document.lines(b)],
    )


def _visible(actor: Actor, settlement_id: int, ctx: Context) -> SettlementBatch:
    """A provider sees its own batches only; another's does not exist for it."""
    b = settlements.get(ctx, settlement_id)
    if actor.role == "provider" and b.provider_id != actor.participant_id:
        raise NotFound("settlement", settlement_id)
    return b


@router.post("", status_code=201, response_model=SettlementDetail)
def create(body: SettlementCreate, ctx: CtxDep, actor: Submitter, idem: IdempotencyDep) -> JSONResponse:
    """Submits the provider's confirmed redemptions, not in any live batch, whose **block time** (the chain's
    clock, not the time the service recorded the receipt) falls in [period_from, period_until). An empty set is
    refused with 409 `settlement_period_empty`. A provider's key submits for its own participant only."""
    if actor.role == "provider" and body.provider_id != actor.participant_id:
        raise NotFound("provider", body.provider_id)
    return idem.run(
        lambda: detail(
            settlements.create(
                ctx,
                provider_id=body.provider_id,
                period_from=body.period_from,
                period_until=body.period_until,
                created_by_role=actor.role,
            )
        ),
        status_code=201,
    )


@router.get("", response_model=list[SettlementPublic])
def list_settlements(
    ctx: CtxDep,
    actor: Viewer,
    provider_id: Id | None = None,
    status: SettlementStatus | None = None,
    offset: Count = 0,
    limit: int = 100,
) -> list[SettlementPublic]:
    """Newest first; a provider sees its own batches only."""
    if actor.role == "provider":
        if provider_id not in (None, actor.participant_id):
            return []
        provider_id = actor.participant_id
    rows = settlements.list_for(
        ctx, provider_id=provider_id, status=status, offset=max(offset, 0), limit=min(max(limit, 1), 500)
    )
    return [public(b) for b in rows]


@router.get("/{settlement_id:int}", response_model=SettlementDetail)
def get_settlement(settlement_id: Id, ctx: CtxDep, actor: Viewer) -> SettlementDetail:
    return detail(_visible(actor, settlement_id, ctx))


@router.post("/{settlement_id:int}/approve", response_model=SettlementDetail)
def approve(settlement_id: Id, ctx: CtxDep, _: Finance, idem: IdempotencyDep) -> JSONResponse:
    """Anchors the batch's digest on chain as the finance bureau and marks it approved with the transaction and
    block. 202 with status `approving` when the block is late: the service completes it once mined."""

    def act() -> Finished[SettlementDetail]:
        done = settlements.approve(ctx, batch_id=settlement_id)
        return Finished(detail(done.value), done.pending)

    return idem.run(act)


@router.post("/{settlement_id:int}/return", response_model=SettlementDetail)
def return_settlement(
    settlement_id: Id, body: SettlementReturnRequest, ctx: CtxDep, _: Finance, idem: IdempotencyDep
) -> JSONResponse:
    """Sends a submitted batch back with a reason; its redemptions may enter a later batch."""
    return idem.run(lambda: detail(settlements.return_batch(ctx, batch_id=settlement_id, reason=body.reason)))


@router.get(
    "/{settlement_id:int}/export",
    response_class=Response,
    responses={
        200: {
            "content": {"application/json": {}, "text/csv": {}},
            "headers": {"X-Settlement-Digest": {"description": "keccak256 of the JSON export, 0x-prefixed"}},
        }
    },
)
def export(
    settlement_id: Id,
    ctx: CtxDep,
    actor: Viewer,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Response:
    """`format=json`: the batch's canonical document, byte for byte the one whose keccak256 is the digest anchored
    on chain (sorted keys, no insignificant whitespace, UTF-8, amounts as integers in fen; fixed at submission).

    `format=csv`: the same lines, then a blank row and the totals (line count, invoice and subsidy totals) as
    name,value rows. The CSV is not itself hashed: it carries the anchored digest in the `X-Settlement-Digest`
    header (and in its last row); the JSON answer carries the same header."""
    b = _visible(actor, settlement_id, ctx)
    headers = {"X-Settlement-Digest": b.digest}
    if fmt == "json":
        headers["Content-Disposition"] = f'attachment; filename="settlement-{b.id}.json"'
        return Response(b.document.encode(), media_type="application/json", headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="settlement-{b.id}.csv"'
    return Response(settlement_document.export_csv(b), media_type="text/csv; charset=utf-8", headers=headers)
