"""`Idempotency-Key` for every ledger-changing POST: a repeat (concurrent or later) gets the first result and
never a second transaction; the same key with a different body is refused. The rows live in
`backend.services.idempotency`; this module turns them into HTTP answers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from backend.api.deps import CtxDep, CurrentActor
from backend.errors import IdempotencyInProgress, IdempotencyKeyReused, InvalidInput, LedgerError, TransactionPending
from backend.faults import crash_point
from backend.services import idempotency as store
from backend.services import resume
from backend.services.context import Context
from backend.services.finished import Finished

WAIT_FOR_FIRST_S = 30.0
POLL_S = 0.05


class Idempotency:
    def __init__(self, ctx: Context, actor_key: str, key: str | None, request_hash: str) -> None:
        self._ctx, self._actor_key, self._key, self._hash = ctx, actor_key, key, request_hash
        self._abandoned_at: datetime | None = None  # set when this request takes over a dead attempt

    async def run_async(self, fn: Callable[[], Awaitable[Any]], *, status_code: int = 200) -> JSONResponse:
        """Runs `fn` once per key; its result (or its refusal) is stored and replayed for repeats."""
        if self._key is None:
            return _answer(await fn(), status_code)[0]
        if (replay := await self._begin()) is not None:
            return replay
        try:
            with resume.taking_over(self._abandoned_at):
                result = await fn()
            crash_point("idempotency.before_done")
        except BaseException as exc:
            await asyncio.to_thread(self._failed, exc)
            raise
        response, body = _answer(result, status_code)
        await self._ctx.writer.run_async(lambda c: store.finish(c, self._key or "", self._actor_key,
                                                                response.status_code, body))  # fmt: skip
        return response

    def run(self, fn: Callable[[], Any], *, status_code: int = 200) -> JSONResponse:
        """`run_async` for a sync route (it runs in a worker thread)."""
        if self._key is None:
            return _answer(fn(), status_code)[0]
        if (replay := asyncio.run(self._begin())) is not None:
            return replay
        try:
            with resume.taking_over(self._abandoned_at):
                result = fn()
            crash_point("idempotency.before_done")
        except BaseException as exc:
            self._failed(exc)
            raise
        response, body = _answer(result, status_code)
        self._ctx.writer.run(lambda c: store.finish(c, self._key or "", self._actor_key, response.status_code, body))
        return response

    def _failed(self, exc: BaseException) -> None:
        """A refusal is the answer for every repeat; a failure that did nothing (5xx) lets the client retry."""
        key, actor = self._key or "", self._actor_key
        if isinstance(exc, LedgerError) and (exc.status < 500 or isinstance(exc, TransactionPending)):
            self._ctx.writer.run(lambda c: store.finish(c, key, actor, exc.status, error_json(exc)))
        else:
            self._ctx.writer.run(lambda c: store.drop(c, key, actor))

    async def _begin(self) -> JSONResponse | None:
        """None when this request runs; the first attempt's answer for a repeat. Waits (awaiting, holding no
        thread) while another attempt holds the key and lives."""
        key, actor, writer = self._key or "", self._actor_key, self._ctx.writer
        deadline = time.monotonic() + WAIT_FOR_FIRST_S
        while True:
            if await writer.run_async(lambda c: store.begin(c, key, actor, self._hash)):
                return None
            rec = await self._ctx.read_async(lambda s: store.find(s, key, actor))
            if rec is None:  # the first attempt failed without a result: try again to be the one
                continue
            if rec.request_hash != self._hash:
                raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
            if rec.state == "done":
                assert rec.status_code is not None and rec.response is not None
                return JSONResponse(
                    json.loads(rec.response), status_code=rec.status_code, headers={"Idempotent-Replayed": "true"}
                )
            if store.abandoned(self._ctx, rec) and await writer.run_async(
                lambda c, rec=rec: store.take_over(c, key, actor, rec)  # type: ignore[misc]
            ):
                self._abandoned_at = rec.created_at
                return None
            if time.monotonic() > deadline:
                raise IdempotencyInProgress("a request with this Idempotency-Key is still running; retry later")
            await asyncio.sleep(POLL_S)


def _answer(result: Any, status_code: int) -> tuple[JSONResponse, Any]:
    """A result (a Finished still pending answers 202) as the response and the body to store."""
    if isinstance(result, Finished):
        result, status_code = result.value, 202 if result.pending else status_code
    body = jsonable_encoder(result)
    return JSONResponse(body, status_code=status_code), body


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
    if idempotency_key is None:
        return Idempotency(ctx, actor.key_id, None, "")
    body = await request.body()
    with contextlib.suppress(ValueError):  # the same JSON with other spacing or key order is the same request
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(request.method.encode() + b" " + request.url.path.encode() + b"\n" + body).hexdigest()
    return Idempotency(ctx, actor.key_id, idempotency_key, digest)


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
