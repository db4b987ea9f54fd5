"""The idempotency store: one row per (API key, Idempotency-Key), holding the request's digest, who runs it, and
once it is done, the answer that every repeat gets.

A request in progress names its owner (host, process id and the process's start time). A repeat that finds the
owner's process gone on this host takes over at once; an owner on another host is trusted until the lease
(`VOUCHER_IDEMPOTENCY_LEASE_S`) has passed since it began.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from backend.models import IdempotencyRecord, unix_time, utcnow
from backend.services.context import Context

log = logging.getLogger(__name__)
_TABLE = IdempotencyRecord.__table__  # type: ignore[attr-defined]


def _start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


HOST = socket.gethostname()
OWNER = f"{HOST}/{os.getpid()}/{_start_time(os.getpid()) or '?'}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process named by `owner` still runs: True/False on this host, None for another host."""
    host, _, rest = owner.partition("/")
    pid, _, started = rest.partition("/")
    if host != HOST or not pid.isdigit():
        return None
    return owner == OWNER or _start_time(int(pid)) == started  # a reused process id has another start time


@dataclass(frozen=True)
class Stored:
    request_hash: str
    state: str
    status_code: int | None
    response: str | None
    created_at: datetime
    owner: str


def begin(conn: Connection, key: str, actor: str, request_hash: str) -> bool:
    """Claims the key for this request; False if a row for it exists already."""
    try:
        with conn.begin_nested():
            conn.execute(insert(_TABLE).values(key=key, api_key_id=actor, request_hash=request_hash, owner=OWNER,
                                               created_at=utcnow()))  # fmt: skip
    except IntegrityError:
        return False
    return True


def find(s: Session, key: str, actor: str) -> Stored | None:
    columns = [_TABLE.c[n] for n in Stored.__dataclass_fields__]
    row = s.connection().execute(select(*columns).where(_TABLE.c.key == key, _TABLE.c.api_key_id == actor)).first()
    return Stored(**row._asdict()) if row is not None else None


def abandoned(ctx: Context, rec: Stored) -> bool:
    """Whether the attempt holding the key can never finish: its process is gone, or (another host) its lease ran
    out."""
    alive = owner_alive(rec.owner) if rec.owner else None
    if alive is not None:
        return not alive
    return unix_time(utcnow()) - unix_time(rec.created_at) > ctx.settings.idempotency_lease_s


def take_over(conn: Connection, key: str, actor: str, rec: Stored) -> bool:
    """Claims an abandoned attempt's key (one taker wins)."""
    taken = conn.execute(
        update(_TABLE)
        .where(
            col(_TABLE.c.key) == key,
            col(_TABLE.c.api_key_id) == actor,
            col(_TABLE.c.state) == "in_progress",
            col(_TABLE.c.created_at) == rec.created_at,
            col(_TABLE.c.owner) == rec.owner,
        )
        .values(created_at=utcnow(), owner=OWNER)
    ).rowcount
    if taken == 1:
        log.warning("taking over an abandoned request with the same Idempotency-Key")
    return bool(taken == 1)


def finish(conn: Connection, key: str, actor: str, status_code: int, body: Any) -> None:
    conn.execute(
        update(_TABLE)
        .where(col(_TABLE.c.key) == key, col(_TABLE.c.api_key_id) == actor)
        .values(state="done", status_code=status_code, response=json.dumps(body))
    )


def drop(conn: Connection, key: str, actor: str) -> None:
    """Forgets an attempt that did nothing, so the client may retry with the same key."""
    conn.execute(
        delete(_TABLE).where(col(_TABLE.c.key) == key, col(_TABLE.c.api_key_id) == actor, col(_TABLE.c.state) != "done")
    )
