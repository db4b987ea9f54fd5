"""The node's state on disk, written by us rather than by anvil: each dump goes to a temporary file, is
fsynced and renamed over the current one, and the previous good dump is kept beside it.

anvil's own `--state` rewrote its file in place (a kill during a dump left invalid JSON) and could dump state
newer than its blocks (a burn's effects with no block holding it). Before a dump is loaded it is checked: it
must parse, its blocks must run from genesis to its head, and every externally owned account's nonce must be
accounted for by the transactions its blocks hold. A dump that fails falls back to the previous one, and the
supervisor says what was lost.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CURRENT = "state.json.gz"
PREVIOUS = "state.prev.json.gz"
LEGACY = "anvil-state.json"  # anvil's own --state file from earlier versions of the devnet


class DumpInvalid(ValueError):
    """A dump that must not be loaded; the message says why."""


@dataclass(frozen=True)
class Dump:
    path: Path
    head: int  # the newest block it holds


def check(state: dict[str, Any]) -> int:
    """The dump's head block if it is consistent, else `DumpInvalid`."""
    try:
        numbers = sorted(int(b["header"]["number"], 16) for b in state["blocks"])  # anvil dumps them unordered
        head = int(state["best_block_number"])
        mined: Counter[str] = Counter()
        for b in state["blocks"]:
            mined.update(t["transaction"]["hash"] for t in b["transactions"])
        sent = Counter(t["info"]["from"].lower() for t in state["transactions"])
        listed = Counter(t["info"]["transaction_hash"] for t in state["transactions"])
        accounts = {a.lower(): v for a, v in state["accounts"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DumpInvalid(f"not a node state dump ({type(exc).__name__}: {exc})") from None
    # A chain loaded from a dump keeps a second genesis of anvil's own beside the loaded one: count numbers once.
    if sorted(set(numbers)) != list(range(head + 1)):
        raise DumpInvalid(f"its blocks do not run from genesis without a gap up to its head block {head}")
    if mined != listed:
        raise DumpInvalid("its transactions and the transactions its blocks hold differ")
    for address, account in accounts.items():
        if account.get("code", "0x") not in ("0x", "", None):
            continue  # a contract's nonce counts its creations, not transactions
        nonce = int(account.get("nonce", 0))
        if nonce != sent.get(address, 0):
            raise DumpInvalid(
                f"account {address} has spent {nonce} nonces but its blocks hold {sent.get(address, 0)} of its "
                "transactions: the state is newer than the blocks"
            )
    return head


def read(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DumpInvalid(f"{path.name} is cut short ({exc})") from None
    try:
        state = json.loads(raw)
    except ValueError as exc:
        raise DumpInvalid(f"{path.name} is not valid JSON ({exc})") from None
    if not isinstance(state, dict):
        raise DumpInvalid(f"{path.name} is not a state dump")
    return state


def choose(folder: Path, legacy_dir: Path | None = None) -> tuple[Dump | None, list[str]]:
    """The newest dump that passes `check` (None: start a new chain), and what was passed over and why."""
    candidates = [folder / CURRENT, folder / PREVIOUS]
    if legacy_dir is not None:
        candidates.append(legacy_dir / LEGACY)
    notes: list[str] = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            head = check(read(path))
        except DumpInvalid as exc:
            notes.append(f"{path.name} passed over: {exc}")
            continue
        return Dump(path, head), notes
    return None, notes


def write(folder: Path, gz_bytes: bytes) -> None:
    """Stores a dump (gzipped JSON, as the node gives it). It is checked when it is loaded, not here: parsing
    tens of megabytes in the gateway's process would stall it, and a dump taken alone with the node is whole.

    The current dump becomes the previous one only once the new one is safely on disk.
    """
    tmp = folder / (CURRENT + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(gz_bytes)
        f.flush()
        os.fsync(f.fileno())
    current = folder / CURRENT
    if current.is_file():
        os.replace(current, folder / PREVIOUS)
    os.replace(tmp, current)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
