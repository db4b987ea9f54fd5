"""The FastAPI application: routers, the error handlers that turn every refusal into JSON with a code,
a body-size limit, and the service context built at start and closed at stop."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.idempotency import error_json
from backend.api.routes import applications, audit, participants, programmes, redemptions, supervision
from backend.api.schemas import ErrorResponse
from backend.errors import LedgerError
from backend.services.context import Context

log = logging.getLogger(__name__)
THREADS = 256  # requests wait on blocks (~0.25 s): many must be able to wait at once


class BodyLimit:
    """Refuses bodies over `max_bytes` with 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _too_large(send, self.max_bytes)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(send, self.max_bytes)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, max_bytes: int) -> None:
    response = JSONResponse(
        {
            "error": {
                "code": "body_too_large",
                "message": f"request bodies are limited to {max_bytes} bytes",
                "details": {},
            }
        },
        status_code=413,
    )
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(make_context: Callable[[], Context], *, max_body_bytes: int = 64 * 1024) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        app.state.ctx = await anyio.to_thread.run_sync(make_context)
        try:
            yield
        finally:
            app.state.ctx.close()

    app = FastAPI(
        title="Compute Voucher Ledger",
        version="0.1.0",
        description="Compute vouchers (算力券): issuance, provider redemption and supervision. Amounts in fen.",
        lifespan=lifespan,
        responses={
            400: {"model": ErrorResponse},
            401: {"model": ErrorResponse},
            403: {"model": ErrorResponse},
            404: {"model": ErrorResponse},
            409: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
        },
    )
    for module in (participants, programmes, applications, redemptions, supervision, audit):
        app.include_router(module.router)

    @app.get("/v1/health", tags=["health"])
    def health(request: Request) -> dict[str, Any]:
        ctx: Context = request.app.state.ctx
        return {
            "status": "ok",
            "chain_id": ctx.chain.chain_id,
            "contract": ctx.chain.address,
            "block": ctx.chain.rpc.block_number(),
            "chain_time": ctx.chain.now(),  # programme windows are judged by this clock, not the server's
            "paused": ctx.chain.paused(),
        }

    @app.exception_handler(LedgerError)
    async def ledger_error(_: Request, exc: LedgerError) -> JSONResponse:
        return JSONResponse(error_json(exc), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Never echo the input: a secret sent in the wrong field must not come back in the error.
        problems = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())),
                "problem": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        body = {
            "error": {"code": "invalid_input", "message": "the request is not valid", "details": {"problems": problems}}
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail), "details": {}}}, status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s while handling a request", type(exc).__name__)
        return JSONResponse(
            {
                "error": {
                    "code": "internal_error",
                    "message": "an unexpected error occurred; nothing was half-written",
                    "details": {},
                }
            },
            status_code=500,
        )

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app
