"""The supervisors' audit trail: mirrored chain events, statements per participant, reconciliation."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from backend.api.deps import STAFF, CtxDep, CurrentActor, ensure_owner_or_staff, require
from backend.api.schemas import MAX_INT, Id, Instant
from backend.api.schemas_audit import (
    AuditEventPage,
    AuditEventPublic,
    DifferencePublic,
    EnterpriseStatement,
    HoldingPublic,
    ProviderProgrammeFigures,
    ProviderStatement,
    ReconciliationPublic,
)
from backend.audit import reconcile, trail
from backend.models import ChainEvent
from backend.services.participants import CATEGORIES

router = APIRouter(prefix="/v1/audit", tags=["audit"])
CATEGORY_NAMES = {bit: name for name, bit in CATEGORIES.items()}


def public(e: ChainEvent) -> AuditEventPublic:
    assert e.id is not None
    return AuditEventPublic(**e.model_dump(exclude={"name", "args"}), event=e.name, args=e.arguments())


@router.get("/events", response_model=AuditEventPage, dependencies=[Depends(require(*STAFF))])
def events(
    ctx: CtxDep,
    enterprise_id: Id | None = None,
    provider_id: Id | None = None,
    programme_id: Id | None = None,
    event: Annotated[str | None, Query(description="event name, e.g. VoucherRedeemed")] = None,
    from_block: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None,
    to_block: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None,
    since: Annotated[Instant | None, Query(description="block time, inclusive")] = None,
    until: Annotated[Instant | None, Query(description="block time, exclusive")] = None,
    after: Annotated[int, Query(ge=0, le=MAX_INT, description="the previous page's next_after")] = 0,
    limit: Annotated[int, Query(ge=1, le=trail.MAX_PAGE)] = 100,
) -> AuditEventPage:
    page = trail.list_events(
        ctx,
        enterprise_id=enterprise_id,
        provider_id=provider_id,
        programme_id=programme_id,
        event=event,
        from_block=from_block,
        to_block=to_block,
        since=since,
        until=until,
        after=after,
        limit=limit,
    )
    return AuditEventPage(block=page.block, events=[public(e) for e in page.events], next_after=page.next_after)


@router.get("/enterprises/{enterprise_id:int}/statement", response_model=EnterpriseStatement)
def enterprise_statement(enterprise_id: Id, ctx: CtxDep, actor: CurrentActor) -> EnterpriseStatement:
    ensure_owner_or_staff(actor, enterprise_id, "enterprise", enterprise_id)
    st = trail.enterprise_statement(ctx, enterprise_id=enterprise_id)
    rows = [HoldingPublic(**asdict(h), balance=h.balance) for h in st.programmes.values()]
    return EnterpriseStatement(enterprise_id=enterprise_id, address=st.address, block=st.block, programmes=rows)


@router.get("/providers/{provider_id:int}/statement", response_model=ProviderStatement)
def provider_statement(provider_id: Id, ctx: CtxDep, actor: CurrentActor) -> ProviderStatement:
    ensure_owner_or_staff(actor, provider_id, "provider", provider_id)
    st = trail.provider_statement(ctx, provider_id=provider_id)
    rows = [
        ProviderProgrammeFigures(
            programme_id=f.programme_id,
            redemptions=f.redemptions,
            subsidy=f.subsidy,
            invoices=f.invoices,
            subsidy_by_category={CATEGORY_NAMES.get(c, str(c)): v for c, v in sorted(f.by_category.items())},
        )
        for f in st.programmes.values()
    ]
    return ProviderStatement(provider_id=provider_id, address=st.address, block=st.block, programmes=rows)


@router.get(
    "/reconciliation",
    response_model=ReconciliationPublic,
    dependencies=[Depends(require("admin", "supervisor", "finance"))],
)
def reconciliation(ctx: CtxDep) -> ReconciliationPublic:
    """The service's records and the event mirror, each compared with the chain's state at one block."""
    r = reconcile.reconcile(ctx)
    return ReconciliationPublic(
        block=r.block, checked=r.checked, differences=[DifferencePublic(**asdict(d)) for d in r.differences]
    )
