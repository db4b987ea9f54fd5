"""API keys: random secrets shown once, stored as SHA-256 digests, each bound to a role (and a participant)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import col, select

from backend.errors import CallerFrozen, NotFound, Unauthenticated
from backend.models import ApiKey, Participant, utcnow
from backend.services.apikey_records import PREFIX, NewKey, add_api_key, digest
from backend.services.context import Context


@dataclass(frozen=True)
class Actor:
    """Who is calling: the key's id, its role and, for enterprises and providers, their participant id."""

    key_id: str
    role: str
    participant_id: int | None


def create_api_key(ctx: Context, *, role: str, participant_id: int | None, label: str = "") -> NewKey:
    with ctx.write() as s:
        key = add_api_key(s, role=role, participant_id=participant_id, label=label)
        s.commit()
    return key


def authenticate(ctx: Context, secret: str | None) -> Actor:
    key_id = _key_id(secret)
    with ctx.read() as s:
        row = s.exec(_lookup(key_id)).first()
    return _actor(key_id, secret or "", row)


async def authenticate_async(ctx: Context, secret: str | None) -> Actor:
    """`authenticate` for the event loop: the lookup goes through the reader thread."""
    key_id = _key_id(secret)
    row = await ctx.first_async(_LOOKUP, {"key_id": key_id})
    return _actor(key_id, secret or "", row)


def _key_id(secret: str | None) -> str:
    if not secret or not secret.startswith(PREFIX) or secret.count("_") < 2:
        raise Unauthenticated("send an API key as `Authorization: Bearer <key>`")
    return secret[len(PREFIX) :].split("_", 1)[0]


def _lookup(key_id: Any) -> Any:
    """One query per request: the key and, for participant keys, whether that participant is frozen right now."""
    return (
        # sqlmodel's select() is typed for at most four columns; this one needs five.
        select(  # type: ignore[call-overload]
            ApiKey.secret_hash, ApiKey.role, ApiKey.participant_id, ApiKey.revoked_at, Participant.frozen
        )
        .outerjoin(Participant, col(Participant.id) == col(ApiKey.participant_id))
        .where(ApiKey.id == key_id)
    )


# Built once: the statement is the same for every request, only the key's id varies.
_LOOKUP = _lookup(bindparam("key_id"))


def _actor(key_id: str, secret: str, row: Any) -> Actor:
    if row is None or not hmac.compare_digest(row[0], digest(secret)):
        raise Unauthenticated("this API key is not valid")
    _, role, participant_id, revoked_at, frozen = row
    if revoked_at is not None:
        raise Unauthenticated("this API key was revoked")
    if frozen:
        raise CallerFrozen("the participant this key belongs to is frozen; a supervisor can unfreeze it")
    return Actor(key_id=key_id, role=role, participant_id=participant_id)


def revoke_api_key(ctx: Context, *, key_id: str) -> ApiKey:
    with ctx.write() as s:
        row = s.get(ApiKey, key_id)
        if row is None:
            raise NotFound("API key", key_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            s.add(row)
            s.commit()
        return row


def list_api_keys(ctx: Context) -> list[ApiKey]:
    with ctx.read() as s:
        return list(s.exec(select(ApiKey).order_by(col(ApiKey.created_at))).all())
