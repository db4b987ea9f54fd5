"""Whether the current request takes over an earlier attempt with the same Idempotency-Key that died half-way
(its process was killed). Services then finish what that attempt started rather than refuse it as done."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime

_started: ContextVar[datetime | None] = ContextVar("resumed_attempt_started", default=None)


def resumed_since() -> datetime | None:
    """When the abandoned attempt began (records it made are newer), or None for a first attempt."""
    return _started.get()


@contextmanager
def taking_over(started: datetime | None) -> Iterator[None]:
    token = _started.set(started)
    try:
        yield
    finally:
        _started.reset(token)
