"""What moves along the transaction pipeline: the call a record asks for, the stored signed transaction, its
outcome, and the completion handler that finishes the record when the outcome is known."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from backend.errors import LedgerError
from backend.models.states import TxKind


@dataclass(frozen=True)
class Call:
    """A call to the ledger: what to send, for which record (kind + ref), with how much gas (None: dry-run it)."""

    kind: TxKind
    data: str
    ref: str = ""
    gas: int | None = None
    # Names the stored transaction on the record before it is sent (a claim shows its burn while it is pending).
    link: Callable[[Connection, str], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class StoredTx:
    """A signed transaction, stored before broadcast, with what is needed to replay and finish it."""

    tx_hash: str
    raw: bytes
    sender: str
    data: str
    kind: TxKind
    ref: str = ""


@dataclass(frozen=True)
class TxOutcome:
    tx_hash: str
    block_number: int
    block_hash: str
    gas_used: int
    logs: list[dict[str, Any]] = field(default_factory=list)
    decode: Callable[[list[dict[str, Any]]], list[Any]] | None = field(default=None, repr=False, compare=False)

    def events(self) -> list[Any]:
        """The ledger's events in this transaction, decoded (DecodedEvent: name, args)."""
        return self.decode(self.logs) if self.decode is not None else []


@dataclass(frozen=True)
class Completion:
    """How a kind of transaction finishes its record, inside the database transaction that records the outcome.

    `done` gets the outcome, `failed` the decoded error of a revert (or of a transaction given up); each may
    return the finished record. `after` runs once the outcome is committed, outside any database transaction,
    for work that needs the chain again (a key rotation's next step)."""

    done: Callable[[Connection, StoredTx, TxOutcome], Any] | None = None
    failed: Callable[[Connection, StoredTx, LedgerError], Any] | None = None
    after: Callable[[Any, StoredTx], None] | None = None


@dataclass(frozen=True)
class Submitted:
    """What `submit` gives back: the transaction, and what its completion handler returned once it was mined.
    `pending`: sent (or stored while the node was away) but not mined in time; the monitor finishes it."""

    tx_hash: str
    pending: bool = False
    outcome: TxOutcome | None = None
    value: Any = None
