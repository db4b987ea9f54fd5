"""Participants (enterprises, providers), their freezing, related parties and API keys."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backend.api.deps import Admin, CtxDep, CurrentActor, Staff, Supervisor, ensure_owner_or_staff
from backend.api.idempotency import IdempotencyDep
from backend.api.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    Count,
    EnterpriseCreate,
    FreezeRequest,
    Id,
    ParticipantPublic,
    ProviderCreate,
    RelatedPartyRequest,
)
from backend.models import ApiKey, Participant
from backend.models.rotation import FormerAddressPublic
from backend.services import apikeys, participants, rotation
from backend.services.participants import category_names

router = APIRouter(prefix="/v1", tags=["participants"])


def public(p: Participant) -> ParticipantPublic:
    data = p.model_dump(exclude={"categories", "next_consent_nonce", "first_redemption_at"})
    return ParticipantPublic(**data, categories=category_names(p.categories))


def key_public(k: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(**k.model_dump(exclude={"secret_hash"}))


@router.post("/participants/enterprises", status_code=201, response_model=ParticipantPublic)
def register_enterprise(body: EnterpriseCreate, ctx: CtxDep, _: Admin, idem: IdempotencyDep) -> JSONResponse:
    return idem.run(
        lambda: public(
            participants.register(
                ctx,
                kind="enterprise",
                name=body.name,
                credit=body.credit_code,
                region_code=body.region_code,
                industry=body.industry,
                size=body.size,
            )
        ),
        status_code=201,
    )


@router.post("/participants/providers", status_code=201, response_model=ParticipantPublic)
def register_provider(body: ProviderCreate, ctx: CtxDep, _: Admin, idem: IdempotencyDep) -> JSONResponse:
    return idem.run(
        lambda: public(
            participants.register(
                ctx,
                kind="provider",
                name=body.name,
                credit=body.credit_code,
                region_code=body.region_code,
                categories=list(body.categories),
            )
        ),
        status_code=201,
    )


@router.get("/participants", response_model=list[ParticipantPublic])
def list_participants(
    ctx: CtxDep, _: Staff, kind: str | None = None, offset: Count = 0, limit: int = 100
) -> list[ParticipantPublic]:
    rows = participants.list_all(ctx, kind=kind, offset=max(offset, 0), limit=min(max(limit, 1), 500))
    return [public(p) for p in rows]


@router.get("/participants/{participant_id:int}", response_model=ParticipantPublic)
def get_participant(participant_id: Id, ctx: CtxDep, actor: CurrentActor) -> ParticipantPublic:
    ensure_owner_or_staff(actor, participant_id, "participant", participant_id)
    return public(participants.get(ctx, participant_id))


@router.post("/participants/{participant_id:int}/freeze", response_model=ParticipantPublic)
def freeze(participant_id: Id, body: FreezeRequest, ctx: CtxDep, _: Supervisor, idem: IdempotencyDep) -> JSONResponse:
    return idem.run(
        lambda: public(
            participants.set_frozen(ctx, participant_id=participant_id, frozen=True, reason_code=body.reason_code)
        )
    )


@router.post("/participants/{participant_id:int}/unfreeze", response_model=ParticipantPublic)
def unfreeze(participant_id: Id, ctx: CtxDep, _: Supervisor, idem: IdempotencyDep) -> JSONResponse:
    return idem.run(lambda: public(participants.set_frozen(ctx, participant_id=participant_id, frozen=False)))


@router.post("/participants/{participant_id:int}/rotate-key", response_model=FormerAddressPublic)
def rotate_key(participant_id: Id, ctx: CtxDep, _: Admin, idem: IdempotencyDep) -> JSONResponse:
    """A new managed key for the participant; its balances, cap use, approvals and related parties follow it, and
    the old address is frozen. A rotation stopped part-way is finished by repeating the request."""
    return idem.run(lambda: FormerAddressPublic(**rotation.rotate(ctx, participant_id=participant_id).model_dump()))


@router.post("/related-parties", response_model=RelatedPartyRequest)
def related_party(body: RelatedPartyRequest, ctx: CtxDep, _: Admin, idem: IdempotencyDep) -> JSONResponse:
    def act() -> dict[str, object]:
        participants.declare_related(
            ctx, enterprise_id=body.enterprise_id, provider_id=body.provider_id, related=body.related
        )
        return body.model_dump()

    return idem.run(act, status_code=200)


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated)
def create_key(body: ApiKeyCreate, ctx: CtxDep, _: Admin) -> ApiKeyCreated:
    # Not replayable through Idempotency-Key on purpose: a stored response would hold the secret.
    new = apikeys.create_api_key(ctx, role=body.role, participant_id=body.participant_id, label=body.label)
    row = next(k for k in apikeys.list_api_keys(ctx) if k.id == new.id)
    return ApiKeyCreated(**key_public(row).model_dump(), secret=new.secret)


@router.get("/api-keys", response_model=list[ApiKeyPublic])
def list_keys(ctx: CtxDep, _: Admin) -> list[ApiKeyPublic]:
    return [key_public(k) for k in apikeys.list_api_keys(ctx)]


@router.post("/api-keys/{key_id}/revoke", response_model=ApiKeyPublic)
def revoke_key(key_id: str, ctx: CtxDep, _: Admin) -> ApiKeyPublic:
    return key_public(apikeys.revoke_api_key(ctx, key_id=key_id))
