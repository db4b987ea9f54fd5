"""Dependencies declared once: the service context, the calling actor, role checks, idempotency."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.errors import Forbidden, NotFound
from backend.services.apikeys import Actor, authenticate_async
from backend.services.context import Context

STAFF = ("admin", "issuer", "finance", "supervisor")


# Dependencies that do not block are `async def`: FastAPI runs a sync one in the thread pool, a hop per
# dependency per request that showed up in the profile under load.
async def get_ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


CtxDep = Annotated[Context, Depends(get_ctx)]


# Declared as an HTTP bearer scheme, so the OpenAPI document (and /docs, and clients generated from it) knows that
# every operation but health needs `Authorization: Bearer <API key>`. Without one, `authenticate` answers 401.
bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <API key>`")


async def current_actor(
    ctx: CtxDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Actor:
    return await authenticate_async(ctx, credentials.credentials.strip() if credentials else None)


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require(*roles: str) -> Callable[[Actor], Coroutine[Any, Any, Actor]]:
    async def check(actor: CurrentActor) -> Actor:
        if actor.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}; your key is {actor.role}")
        return actor

    return check


Admin = Annotated[Actor, Depends(require("admin"))]
Issuer = Annotated[Actor, Depends(require("issuer"))]
Supervisor = Annotated[Actor, Depends(require("supervisor"))]
Staff = Annotated[Actor, Depends(require(*STAFF))]
EnterpriseActor = Annotated[Actor, Depends(require("enterprise"))]
ProviderActor = Annotated[Actor, Depends(require("provider"))]


def ensure_owner_or_staff(actor: Actor, participant_id: int, resource: str, ident: object) -> None:
    """Enterprises and providers see only their own records; what is not theirs does not exist for them."""
    if actor.role in STAFF:
        return
    if actor.participant_id != participant_id:
        raise NotFound(resource, ident)
