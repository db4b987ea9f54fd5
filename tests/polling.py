"""Waiting in tests for something another process or thread does: one polling loop, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.1,
    *,
    ignoring: tuple[type[Exception], ...] = (),
    message: str = "",
) -> T:
    """Calls `check` until it returns a truthy value, and returns that value.

    A falsy value, an `AssertionError` or one of the `ignoring` exceptions (say, a connection refused while a
    server starts) mean "not yet". Past `timeout` seconds an `AssertionError` says `message` (what did not happen)
    and the last failure's own words. Any other exception ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    retried: tuple[type[Exception], ...] = (AssertionError, *ignoring)
    while True:
        failure: Exception | None = None
        try:
            value = check()
            if value:
                return value
        except retried as exc:
            failure = exc
        if time.monotonic() >= deadline:
            last = f": {type(failure).__name__}: {failure}" if failure else ""
            raise AssertionError(f"{message or 'not met'} within {timeout:g} s{last}") from failure
        time.sleep(interval)
