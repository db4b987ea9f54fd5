"""Per-API-key rate limits on the claim and application endpoints: fixed one-minute windows, counted in memory.

The counts live in this process only. A deployment with N worker processes (or N replicas) lets a key make up to
N × `rate_limit_per_minute` requests a minute; put the limit in front of the workers (a proxy, or a shared store
such as Redis) where that matters. A restart forgets the counts.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from backend.api.deps import CtxDep, CurrentActor
from backend.api.schemas import ErrorResponse
from backend.errors import RateLimited

WINDOW_S = 60

# For the routes that use `limit`: the 429 their OpenAPI entry documents (with its `Retry-After` header).
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorResponse,
        "description": "too many requests with this API key this minute (`rate_limited`)",
        "headers": {"Retry-After": {"description": "seconds until the next window", "schema": {"type": "integer"}}},
    }
}


class RateLimiter:
    """Counts requests per (bucket, key) in fixed windows of `WINDOW_S` seconds of `clock`.

    `clock` returns monotonic seconds: a wall clock set back would reopen a spent window. Tests pass their own
    clock to move time rather than wait for it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._counts: dict[tuple[str, str, int], int] = {}
        self._lock = threading.Lock()

    def hit(self, bucket: str, key: str, per_minute: int) -> None:
        """Counts one request; past `per_minute` in this window, `RateLimited` with the seconds left in it."""
        now = self.clock()
        window = int(now // WINDOW_S)
        with self._lock:
            for old in [k for k in self._counts if k[2] < window]:
                del self._counts[old]
            count = self._counts[bucket, key, window] = self._counts.get((bucket, key, window), 0) + 1
        if count > per_minute:
            raise RateLimited(
                f"more than {per_minute} {bucket} requests this minute; slow down",
                retry_after_s=max(1, math.ceil((window + 1) * WINDOW_S - now)),
            )


limiter = RateLimiter()  # the process's one limiter (its counts are per process: see above)


def limit(bucket: str) -> Callable[[CtxDep, CurrentActor], Coroutine[Any, Any, None]]:
    async def check(ctx: CtxDep, actor: CurrentActor) -> None:  # no blocking inside: no thread pool hop
        per_minute = ctx.settings.rate_limit_per_minute
        if per_minute > 0:
            limiter.hit(bucket, actor.key_id, per_minute)

    return check
