"""API key records: the roles a key may carry, and a new key's random secret, stored only as its SHA-256 digest.

They take a database session, not the service context, so that both the API key service and the start-up wiring
(the bootstrap admin key) use them without importing each other."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlmodel import Session

from backend.errors import InvalidInput, NotFound
from backend.models import ApiKey, Participant

ROLES = ("admin", "issuer", "finance", "supervisor", "enterprise", "provider")
PARTICIPANT_ROLES = ("enterprise", "provider")
PREFIX = "cvl_"


@dataclass(frozen=True)
class NewKey:
    id: str
    secret: str  # shown once, to whoever asked for the key; never stored
    role: str
    participant_id: int | None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def add_api_key(s: Session, *, role: str, participant_id: int | None, label: str = "") -> NewKey:
    """Adds a key to the session (the caller commits) after checking its role against the participant."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    if (role in PARTICIPANT_ROLES) != (participant_id is not None):
        raise InvalidInput(f"a {role} key {'needs' if role in PARTICIPANT_ROLES else 'takes no'} participant_id")
    if participant_id is not None:
        p = s.get(Participant, participant_id)
        if p is None:
            raise NotFound("participant", participant_id)
        if p.kind != role:
            raise InvalidInput(f"participant {participant_id} is a {p.kind}, not a {role}")
    key_id = secrets.token_hex(6)
    secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    s.add(ApiKey(id=key_id, secret_hash=digest(secret), role=role, participant_id=participant_id, label=label))
    return NewKey(id=key_id, secret=secret, role=role, participant_id=participant_id)
