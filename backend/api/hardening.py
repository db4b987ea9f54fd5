"""What a browser is told on every response, and the API docs served from the service's own files.

Every response: no content sniffing, no framing, a Content-Security-Policy that allows only the service's own
origin; every /v1 response: `Cache-Control: no-store`, since some carry secrets (a new API key) and none should
sit in a shared cache. `/docs` is Swagger UI from the npm package `swagger-ui-dist` (installed by `npm ci`), not
from a CDN: an isolated network has none. Its one inline script is allowed by its hash, nothing else inline.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.paths import PROJECT_ROOT

log = logging.getLogger(__name__)
SWAGGER_DIR = PROJECT_ROOT / "node_modules" / "swagger-ui-dist"
ASSETS_URL = "/docs/assets"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")  # all the page needs; nothing else served
CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
ALWAYS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


def security_headers(path: str) -> dict[str, str]:
    """The headers every response to `path` carries (a route may set a stricter or wider CSP of its own)."""
    headers = {**ALWAYS, "Content-Security-Policy": CSP}
    if path == "/v1" or path.startswith("/v1/"):
        headers["Cache-Control"] = "no-store"
    return headers


class SecurityHeaders:
    """Adds `security_headers` to every HTTP response that passes through, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = security_headers(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    if name != "Content-Security-Policy" or name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _inline_script_hashes(html: str) -> list[str]:
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    return [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts]


def add_local_docs(app: FastAPI) -> None:
    """Serves Swagger UI at /docs from node_modules/swagger-ui-dist (create the app with docs_url=None)."""
    if not (SWAGGER_DIR / ASSETS[0]).is_file():
        log.warning("%s is missing: /docs will be blank until `npm ci` installs it", SWAGGER_DIR)
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} - API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # else Swagger UI sends the document to its online validator
    )
    html = bytes(page.body).decode()
    # Swagger UI's stylesheet draws its icons with data: images; its init script is the page's only inline code.
    csp = f"{CSP}; script-src 'self' {' '.join(_inline_script_hashes(html))}; img-src 'self' data:"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": csp})

    @app.get(ASSETS_URL + "/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        path = SWAGGER_DIR / name
        if name not in ASSETS or not path.is_file():
            raise StarletteHTTPException(404, f"no such documentation asset: {name}")
        return FileResponse(path)
