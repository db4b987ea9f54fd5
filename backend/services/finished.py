"""What a service gives back for a request whose transaction may still be on its way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Finished(Generic[T]):
    """The record as it stands. `pending`: its transaction is sent but not yet mined (HTTP 202); the monitor
    finishes it, and the record says so when it is done."""

    value: T
    pending: bool = False
