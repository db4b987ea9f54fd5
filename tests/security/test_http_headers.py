"""Finding: HTTP hardening. Responses carrying a new API key could be cached, nothing forbade sniffing or framing,
and /docs pulled Swagger UI from a CDN (blank on an isolated network, and a third party's script on the page).
Now every response carries the browser headers, every /v1 response `no-store`, and /docs is served locally."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator

import httpx
import pytest

from backend.paths import PROJECT_ROOT
from tests.api.support import Api, Service
from tests.factory import ServiceFactory


@pytest.fixture(scope="module")
def service(services: ServiceFactory) -> Iterator[Service]:
    yield from services.serve("headers")


def assert_browser_headers(response: httpx.Response) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_docs_load_swagger_ui_only_from_the_service_itself(service: Service) -> None:
    page = httpx.get(f"{service.url}/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert len(urls) == 4, urls  # stylesheet, icon, script, the OpenAPI document
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = httpx.get(service.url + url)
        assert asset.status_code == 200 and asset.content, url
        assert_browser_headers(asset)
    assert "cdn" not in page.text.lower() and "http" not in page.text.lower()


def test_docs_policy_allows_its_own_inline_script_and_nothing_else_inline(service: Service) -> None:
    page = httpx.get(f"{service.url}/docs")
    inline = re.findall(r"<script>(.*?)</script>", page.text, flags=re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    csp = page.headers["Content-Security-Policy"]
    assert f"script-src 'self' 'sha256-{digest}';" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert_browser_headers(page)


def test_only_the_assets_the_page_needs_are_served(service: Service) -> None:
    # The package's own index.html would load the Petstore example from the internet: it is not served.
    for name in ("index.html", "swagger-initializer.js", "..%2F..%2Fpackage.json"):
        response = httpx.get(f"{service.url}/docs/assets/{name}")
        assert response.status_code == 404, name
        assert_browser_headers(response)
    assert httpx.get(f"{service.url}/redoc").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/v1/health", None, 200),
        ("GET", "/v1/participants", None, 200),
        ("GET", "/v1/no-such-thing", None, 404),
        ("POST", "/v1/participants/enterprises", b"{not json", 422),
        ("DELETE", "/v1/health", None, 405),
        ("POST", "/v1/participants/enterprises", b"x" * (128 * 1024), 413),
    ],
)
def test_every_v1_response_is_never_cached_and_carries_the_browser_headers(
    api: Api, method: str, path: str, body: bytes | None, status: int
) -> None:
    headers = {"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"}
    response = api.http.request(method, path, content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["Cache-Control"] == "no-store"
    assert_browser_headers(response)


def test_unauthenticated_refusal_carries_the_headers(service: Service) -> None:
    response = httpx.get(f"{service.url}/v1/participants")
    assert response.status_code == 401
    assert response.headers["Cache-Control"] == "no-store"
    assert_browser_headers(response)


def test_a_new_api_key_is_never_cached(api: Api) -> None:
    response = api.post("/v1/api-keys", {"role": "issuer", "label": "headers test"})
    assert response.status_code == 201 and response.json()["secret"].startswith("cvl_")
    assert response.headers["Cache-Control"] == "no-store"
    assert_browser_headers(response)


def test_no_cdn_url_remains_in_the_service() -> None:
    hosts = ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.", "fastapi.tiangolo.com/img", "validator.swagger.io")
    for path in (PROJECT_ROOT / "backend").rglob("*"):
        if path.is_file() and path.suffix in {".py", ".html", ".js", ".css", ".json"}:
            text = path.read_text(errors="replace")
            assert not [h for h in hosts if h in text], path
