"""Per-API-key rate limits on the claim and application endpoints (fixed one-minute windows, per process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from backend.api.deps import CtxDep, CurrentActor
from backend.errors import RateLimited

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
