"""The FastAPI application: routers, the error handlers that turn every refusal into JSON with a code,
a body-size limit, and the service context built at start and closed at stop."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security.utils import get_authorization_scheme_param
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.hardening import SecurityHeaders, add_local_docs, security_headers
from backend.api.idempotency import error_json
from backend.api.routes import (
    applications,
    audit,
    participants,
    programmes,
    redemptions,
    reports,
    settlements,
    supervision,
    transactions,
)
from backend.api.schemas import ErrorResponse
from backend.errors import LedgerError, RateLimited
from backend.services.apikeys import authenticate
from backend.services.context import Context
from backend.services.health import check_health

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
                raise _TooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(send, self.max_bytes)


class _TooLarge(StarletteHTTPException):
    """An HTTP exception, so FastAPI passes it on when it is raised while FastAPI reads the body (a chunked body
    has no Content-Length to refuse up front) instead of turning it into a 400 "error parsing the body"."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request bodies are limited to {max_bytes} bytes")


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


async def _caller_refused(request: Request) -> JSONResponse | None:
    """The refusal (401, or 403 for a frozen participant) the caller's API key gets, if it gets one."""
    scheme, secret = get_authorization_scheme_param(request.headers.get("Authorization"))
    bearer = secret if scheme.lower() == "bearer" else ""
    try:
        await anyio.to_thread.run_sync(authenticate, request.app.state.ctx, bearer)
    except LedgerError as exc:
        return JSONResponse(error_json(exc), status_code=exc.status)
    return None


def _allowed_methods(app: FastAPI, path: str) -> str:
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.fullmatch(path):
            methods |= route.methods
    return ", ".join(sorted(methods))


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
        docs_url=None,  # served from local files by add_local_docs, never from a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        responses={
            400: {"model": ErrorResponse},
            401: {"model": ErrorResponse},
            403: {"model": ErrorResponse},
            404: {"model": ErrorResponse},
            409: {"model": ErrorResponse},
            413: {"model": ErrorResponse, "description": "the body is over the size limit"},
            422: {"model": ErrorResponse},
            502: {"model": ErrorResponse, "description": "the chain refused or failed in a way not foreseen"},
            503: {"model": ErrorResponse},
        },
    )
    routers = (
        participants,
        programmes,
        applications,
        redemptions,
        supervision,
        audit,
        settlements,
        reports,
        transactions,
    )
    for module in routers:
        app.include_router(module.router)
    add_local_docs(app)

    @app.get("/v1/health", tags=["health"])
    def health(request: Request) -> dict[str, Any]:
        return {"status": "ok", **asdict(check_health(request.app.state.ctx))}

    @app.exception_handler(LedgerError)
    async def ledger_error(_: Request, exc: LedgerError) -> JSONResponse:
        retry_after = exc.details.get("retry_after_s") if isinstance(exc, RateLimited) else None
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return JSONResponse(error_json(exc), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()) and (refused := await _caller_refused(request)):
            return refused  # FastAPI parses JSON before it runs the key check: run it here, so 401 comes first
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
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and (refused := await _caller_refused(request)):
            return refused  # a body FastAPI could not parse at all (JSON nested too deep): the key check first
        codes = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        code = codes.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method the path takes, not only those of the first route that matched it
            headers["Allow"] = _allowed_methods(request.app, request.url.path)
        body = {"error": {"code": code, "message": str(exc.detail), "details": {}}}
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
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
            headers=security_headers(request.url.path),  # sent from outside every middleware: add them here
        )

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(SecurityHeaders)  # outermost: the body limit's 413 gets the headers too
    return app
