"""`Idempotency-Key` for every ledger-changing POST: a repeat (concurrent or later) gets the first result and
never a second transaction; the same key with a different body is refused."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from backend.api.deps import CtxDep, CurrentActor
from backend.errors import IdempotencyInProgress, IdempotencyKeyReused, InvalidInput, LedgerError, TransactionPending
from backend.faults import crash_point
from backend.models import IdempotencyRecord, unix_time, utcnow
from backend.services import resume

log = logging.getLogger(__name__)

WAIT_FOR_FIRST_S = 30.0


class Accepted:
    """A result still being finished on chain: answered with 202 and the record as it stands."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Idempotency:
    def __init__(self, ctx: Any, actor_key: str, key: str | None, request_hash: str) -> None:
        self._ctx, self._actor_key, self._key, self._hash = ctx, actor_key, key, request_hash
        self._abandoned_at: datetime | None = None  # set when this request takes over a dead attempt

    def run(self, fn: Callable[[], Any], *, status_code: int = 200) -> JSONResponse:
        """Runs `fn` once per key; its result (or its refusal) is stored and replayed for repeats."""
        if self._key is None:
            result = fn()
            if isinstance(result, Accepted):
                return JSONResponse(jsonable_encoder(result.value), status_code=202)
            return JSONResponse(jsonable_encoder(result), status_code=status_code)
        replay = self._begin()
        if replay is not None:
            return replay
        try:
            with resume.taking_over(self._abandoned_at):
                result = fn()
            crash_point("idempotency.before_done")
        except TransactionPending as exc:
            self._finish(exc.status, error_json(exc))
            raise
        except LedgerError as exc:
            if exc.status >= 500:
                self._drop()  # nothing was done: let the client retry with the same key
            else:
                self._finish(exc.status, error_json(exc))
            raise
        except BaseException:
            self._drop()
            raise
        if isinstance(result, Accepted):
            result, status_code = result.value, 202
        body = jsonable_encoder(result)
        self._finish(status_code, body)
        return JSONResponse(body, status_code=status_code)

    def _begin(self) -> JSONResponse | None:
        assert self._key is not None  # run() handles the no-key case before calling here
        engine = self._ctx.engine
        with Session(engine) as s:
            s.add(IdempotencyRecord(key=self._key, api_key_id=self._actor_key, request_hash=self._hash))
            try:
                s.commit()
                return None
            except IntegrityError:
                s.rollback()
        deadline = time.monotonic() + WAIT_FOR_FIRST_S
        while True:
            with Session(engine) as s:
                rec = s.get(IdempotencyRecord, (self._key, self._actor_key))
            if rec is None:  # the first attempt failed without a result: this one goes ahead
                return self._begin()
            if rec.request_hash != self._hash:
                raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
            if rec.state == "done":
                assert rec.status_code is not None and rec.response is not None
                return JSONResponse(
                    json.loads(rec.response), status_code=rec.status_code, headers={"Idempotent-Replayed": "true"}
                )
            if self._take_over(rec):
                return None
            if time.monotonic() > deadline:
                raise IdempotencyInProgress("a request with this Idempotency-Key is still running; retry later")
            time.sleep(0.05)

    def _take_over(self, rec: IdempotencyRecord) -> bool:
        """An attempt older than the lease died with its process: claim it (one taker wins) and run again."""
        lease = self._ctx.settings.idempotency_lease_s
        if unix_time(utcnow()) - unix_time(rec.created_at) <= lease:
            return False
        with Session(self._ctx.engine) as s:
            taken = s.exec(
                update(IdempotencyRecord)
                .where(
                    col(IdempotencyRecord.key) == rec.key,
                    col(IdempotencyRecord.api_key_id) == rec.api_key_id,
                    col(IdempotencyRecord.state) == "in_progress",
                    col(IdempotencyRecord.created_at) == rec.created_at,
                )
                .values(created_at=utcnow())
            ).rowcount
            s.commit()
        if taken == 1:
            log.warning("taking over an abandoned request with the same Idempotency-Key")
            self._abandoned_at = rec.created_at
        return bool(taken == 1)

    def _finish(self, status_code: int, body: Any) -> None:
        with Session(self._ctx.engine) as s:
            rec = s.get(IdempotencyRecord, (self._key, self._actor_key))
            if rec is not None:
                rec.state, rec.status_code, rec.response = "done", status_code, json.dumps(body)
                s.add(rec)
                s.commit()

    def _drop(self) -> None:
        with Session(self._ctx.engine) as s:
            rec = s.get(IdempotencyRecord, (self._key, self._actor_key))
            if rec is not None and rec.state != "done":
                s.delete(rec)
                s.commit()


def error_json(exc: LedgerError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message, "details": jsonable_encoder(exc.details)}}


async def _idempotency(
    request: Request,
    ctx: CtxDep,
    actor: CurrentActor,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Idempotency:
    if idempotency_key is not None and not idempotency_key.strip():
        raise InvalidInput("Idempotency-Key must not be empty")
    body = await request.body()
    with contextlib.suppress(ValueError):  # the same JSON with other spacing or key order is the same request
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(request.method.encode() + b" " + request.url.path.encode() + b"\n" + body).hexdigest()
    return Idempotency(ctx, actor.key_id, idempotency_key, digest)


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
