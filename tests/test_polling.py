"""The tests' one polling helper: it returns what the check found, retries what is not there yet, and fails
saying what never happened."""

from __future__ import annotations

import itertools

import pytest

from tests.polling import eventually


def test_eventually_returns_the_first_truthy_value_after_retrying_falsy_values_and_failed_assertions() -> None:
    calls = itertools.count(1)

    def third_time() -> str | None:
        n = next(calls)
        assert n != 2, "the second call fails an assertion"
        return "found" if n == 3 else None

    assert eventually(third_time, timeout=5, interval=0.001) == "found"
    assert next(calls) == 4  # called exactly three times


def test_eventually_fails_at_the_timeout_naming_what_did_not_happen_and_the_last_failure() -> None:
    def never() -> bool:
        raise AssertionError("still 3 pending")

    with pytest.raises(AssertionError, match=r"did not settle within 0.05 s: AssertionError: still 3 pending"):
        eventually(never, timeout=0.05, interval=0.01, message="the claim did not settle")
    with pytest.raises(AssertionError, match=r"not met within 0.05 s$"):
        eventually(lambda: False, timeout=0.05, interval=0.01)


def test_eventually_retries_only_the_exceptions_it_is_told_to_ignore() -> None:
    attempts = itertools.count(1)

    def refused_once() -> bool:
        if next(attempts) == 1:
            raise ConnectionRefusedError
        return True

    assert eventually(refused_once, timeout=5, interval=0.001, ignoring=(ConnectionRefusedError,)) is True
    nothing: dict[str, bool] = {}
    with pytest.raises(KeyError):  # anything else ends the wait at once
        eventually(lambda: nothing["missing"], timeout=5)
