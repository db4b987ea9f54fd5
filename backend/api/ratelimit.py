"""Per-API-key rate limits on the claim and application endpoints: fixed one-minute windows, counted in memory.

The counts live in this process only. A deployment with N worker processes (or N replicas) lets a key make up to
N × `rate_limit_per_minute` requests a minute; put the limit in front of the workers (a proxy, or a shared store
such as Redis) where that matters. A restart forgets the counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from backend.api.deps import CtxDep, CurrentActor
from backend.api.schemas import ErrorResponse
from backend.errors import RateLimited

# For the routes that use `limit`: the 429 their OpenAPI entry documents (with its `Retry-After` header).
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorResponse,
        "description": "too many requests with this API key this minute (`rate_limited`)",
        "headers": {"Retry-After": {"description": "seconds until the next window", "schema": {"type": "integer"}}},
    }
}

_counts: dict[tuple[str, str, int], int] = {}
_lock = threading.Lock()


def limit(bucket: str) -> Callable[[CtxDep, CurrentActor], Coroutine[Any, Any, None]]:
    async def check(ctx: CtxDep, actor: CurrentActor) -> None:  # no blocking inside: no thread pool hop
        per_minute = ctx.settings.rate_limit_per_minute
        if per_minute <= 0:
            return
        window = int(time.time() // 60)
        key = (bucket, actor.key_id, window)
        with _lock:
            for old in [k for k in _counts if k[2] < window]:
                del _counts[old]
            _counts[key] = _counts.get(key, 0) + 1
            count = _counts[key]
        if count > per_minute:
            raise RateLimited(
                f"more than {per_minute} {bucket} requests this minute; slow down",
                retry_after_s=60 - int(time.time()) % 60,
            )

    return check
