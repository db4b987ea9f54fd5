"""Rate limits on the application and redemption-claim endpoints: per API key, set by
`VOUCHER_RATE_LIMIT_PER_MINUTE`. Past the limit: 429 `rate_limited` with `Retry-After`, nothing written, nothing sent;
another key is not affected. (The counts are per process: see `backend/api/ratelimit.py`.) The limiter's clock is the
test's own: time moves when the test moves it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from backend.api import ratelimit
from backend.settings import Settings
from tests.api.support import Api, claim_body
from tests.factory import ServiceFactory, run_service, service_settings

LIMIT = 3


@dataclass
class World:
    api: Api
    enterprise: dict[str, Any]
    programme: int
    as_enterprise: Api
    as_enterprise_2: Api  # a second key of the same enterprise
    as_provider: Api
    as_provider_2: Api  # another provider, in the same programme


@pytest.fixture(scope="module")
def world(services: ServiceFactory) -> Iterator[World]:
    data_dir = services.folder("limited")
    with pytest.MonkeyPatch.context() as env:  # configured the way an operator does it
        env.setenv("VOUCHER_RATE_LIMIT_PER_MINUTE", str(LIMIT))
        settings = service_settings(data_dir)
    assert settings.rate_limit_per_minute == LIMIT
    for service in run_service(settings):
        with Api(service) as api:
            enterprise, p, q = api.enterprise(), api.provider(), api.provider()
            programme = api.programme([p["id"], q["id"]])["id"]
            api.fund(enterprise, programme, 100_000_00)
            as_enterprise, as_enterprise_2 = (api.as_(api.key_for("enterprise", enterprise["id"])) for _ in range(2))
            as_p, as_q = (api.as_(api.key_for("provider", x["id"])) for x in (p, q))
            yield World(api, enterprise, programme, as_enterprise, as_enterprise_2, as_p, as_q)


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A fresh limiter on the test's clock, 15.5 s into a window: no count of an earlier test carries over."""
    clock = Clock(1_000 * ratelimit.WINDOW_S + 15.5)
    monkeypatch.setattr(ratelimit, "limiter", ratelimit.RateLimiter(clock))
    return clock


def _apply(w: World) -> dict[str, Any]:
    return {"programme_id": w.programme, "amount": 1_00, "purpose": "burst"}


def _claim(w: World) -> dict[str, Any]:
    return claim_body(w.enterprise["id"], w.programme, 100_00)


def assert_rate_limited(response: httpx.Response, retry_after: int) -> None:
    """429 `rate_limited`, telling the client to come back when the window ends, `retry_after` seconds from now."""
    body = response.json()
    assert (response.status_code, body["error"]["code"]) == (429, "rate_limited"), response.text
    assert f"more than {LIMIT}" in body["error"]["message"] and "slow down" in body["error"]["message"]
    assert response.headers["Retry-After"] == str(retry_after)
    assert body["error"]["details"] == {"retry_after_s": retry_after}


@pytest.mark.parametrize("endpoint", ["applications", "redemptions"])
def test_past_the_limit_a_key_gets_429_and_nothing_is_done(world: World, clock: Clock, endpoint: str) -> None:
    w = world
    mine, other = (
        (w.as_enterprise, w.as_enterprise_2) if endpoint == "applications" else (w.as_provider, w.as_provider_2)
    )
    body = _apply if endpoint == "applications" else _claim
    for _ in range(LIMIT):
        w.api.ok(mine.post(f"/v1/{endpoint}", body(w)), 201)
    before, sent = w.api.service.row_counts(), w.api.service.tx_count()
    for key in (None, "after-the-limit"):  # with an Idempotency-Key too: the refusal is not stored for replay
        assert_rate_limited(mine.post(f"/v1/{endpoint}", body(w), key=key), retry_after=45)  # 15.5 s into 60
    assert (w.api.service.row_counts(), w.api.service.tx_count()) == (before, sent), (
        "a refused request wrote or sent something"
    )
    w.api.ok(other.post(f"/v1/{endpoint}", body(w)), 201)  # another key has its own count
    w.api.ok(mine.get(f"/v1/{endpoint}"))  # reads are not limited


@pytest.mark.usefixtures("clock")
def test_the_limit_counts_each_endpoint_separately(world: World) -> None:
    """An enterprise that used up its applications can still confirm the claims made against it."""
    w = world
    for _ in range(LIMIT):
        w.as_enterprise_2.post("/v1/applications", _apply(w))
    assert_rate_limited(w.as_enterprise_2.post("/v1/applications", _apply(w)), retry_after=45)
    claim = w.api.ok(w.as_provider_2.post("/v1/redemptions", _claim(w)), 201)
    assert w.api.ok(w.as_enterprise_2.post(f"/v1/redemptions/{claim['id']}/confirm"))["status"] == "confirmed"


def test_a_spent_key_may_go_again_when_the_window_ends_and_not_before(world: World, clock: Clock) -> None:
    w = world
    for _ in range(LIMIT):
        w.api.ok(w.as_provider.post("/v1/redemptions", _claim(w)), 201)
    clock.now += 44.0  # 59.5 s into the window: half a second left, told as one
    assert_rate_limited(w.as_provider.post("/v1/redemptions", _claim(w)), retry_after=1)
    clock.now += 0.5  # the next window: a full count again, and the refusals of the last one are not carried over
    for _ in range(LIMIT):
        w.api.ok(w.as_provider.post("/v1/redemptions", _claim(w)), 201)
    assert_rate_limited(w.as_provider.post("/v1/redemptions", _claim(w)), retry_after=60)


def test_no_limit_by_default() -> None:
    assert Settings.model_fields["rate_limit_per_minute"].default == 0  # 0: off, for single-tenant installs
