"""The event mirror: every log of the voucher contract, copied into the database with its block number, block
hash, transaction hash and log index, whoever sent the transaction.

It reads forward from its checkpoint (the newest MirrorBlock) in bounded ranges. Before each pass it checks
that the checkpoint's hash is still the chain's: when it is not (a reorg, or a node restored from an older
state dump), it walks back over the hashes it kept to the last block both agree on, deletes what came after,
and reads again from there. Several worker processes may run it at once: rows are unique per (block, log
index), and a pass that loses the race is rolled back whole and simply retried.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import delete, func, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from backend.audit import logdecode
from backend.chain import logscan
from backend.chain.events import DecodedEvent, EventDecoder
from backend.chain.hashing import checksum_address as to_checksum_address
from backend.models import ChainEvent, MirrorBlock
from backend.services.background import Periodic
from backend.services.context import Context

log = logging.getLogger(__name__)

KEEP_HASHES = 256  # newest block hashes kept to find a fork point; a deeper rollback re-reads from the deployment
INT64_MAX = 2**63 - 1
_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


class ChainMovedDuringRead(Exception):
    """A log's block hash disagreed with the header read beside it: the chain changed under the mirror."""


def sync(ctx: Context, *, step: int = logscan.DEFAULT_STEP) -> int:
    """Brings the mirror up to the chain's head; returns the block it is now consistent with."""
    with _lock_for(ctx):
        for _ in range(3):
            try:
                return _sync(ctx, step)
            except (IntegrityError, ChainMovedDuringRead) as exc:  # another process wrote first, or a reorg mid-read
                log.info("mirror pass retried: %s", type(exc).__name__)
        return _sync(ctx, step)


def checkpoint(ctx: Context) -> MirrorBlock | None:
    with ctx.read() as s:
        return s.exec(select(MirrorBlock).order_by(col(MirrorBlock.number).desc()).limit(1)).first()


def _lock_for(ctx: Context) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(id(ctx.engine), threading.Lock())


def _sync(ctx: Context, step: int) -> int:
    rpc = ctx.chain.rpc
    head = rpc.block_number()
    start = _resume_point(ctx)
    contract = ctx.chain.deployment.voucher
    for chunk in logscan.scan(rpc, contract.address, start, head, step=step):
        _store(ctx, chunk)
    mark = checkpoint(ctx)
    return mark.number if mark is not None else start - 1


def _resume_point(ctx: Context) -> int:
    """The first block to read: after the checkpoint, or after the fork point if the chain moved."""
    deploy_block = ctx.chain.deployment.voucher.deploy_block
    with ctx.read() as s:
        kept = s.exec(select(MirrorBlock).order_by(col(MirrorBlock.number).desc()).limit(KEEP_HASHES)).all()
    if not kept:
        return deploy_block
    headers = logscan.block_headers(ctx.chain.rpc, [kept[0].number])
    if kept[0].number in headers and headers[kept[0].number]["hash"] == kept[0].hash:
        return kept[0].number + 1
    headers = logscan.block_headers(ctx.chain.rpc, [b.number for b in kept])
    fork = next((b.number for b in kept if b.number in headers and headers[b.number]["hash"] == b.hash), None)
    fork = fork if fork is not None else deploy_block - 1
    log.warning("the chain no longer holds block %s as mirrored: rolling the mirror back to %s", kept[0].number, fork)
    with ctx.write() as s:
        s.exec(delete(ChainEvent).where(col(ChainEvent.block_number) > fork))
        s.exec(delete(MirrorBlock).where(col(MirrorBlock.number) > fork))
        s.commit()
    return fork + 1


def decode_logs(generic: EventDecoder, logs: list[dict[str, Any]]) -> list[DecodedEvent]:
    """The voucher events sliced out of the hex by `logdecode` (the ABI decoder cost ~30 times as much), the
    others (roles, registrations, ...) by the ABI: the same events either way, addresses checksummed."""
    decoded: list[DecodedEvent] = []
    for raw in logs:
        fast = logdecode.decode(raw)
        if fast is None:
            if (event := generic.decode(raw)) is not None:
                decoded.append(event)
            continue
        name, args = fast
        for key in logdecode.ADDRESSES[name]:
            args[key] = _checksummed(args[key])
        decoded.append(
            DecodedEvent(
                name=name,
                args=args,
                block_number=int(raw["blockNumber"], 16),
                block_hash=str(raw["blockHash"]),
                tx_hash=str(raw["transactionHash"]),
                log_index=int(raw["logIndex"], 16),
                address=_checksummed(str(raw["address"]).lower()),
            )
        )
    return decoded


@lru_cache(maxsize=65_536)
def _checksummed(address: str) -> str:
    return to_checksum_address(address)  # a keccak each (~19 µs): the same few holders and operators recur


def _store(ctx: Context, chunk: logscan.LogRange) -> None:
    decoded = decode_logs(ctx.chain.events, chunk.logs)
    numbers = {d.block_number for d in decoded} | {chunk.last}
    headers = logscan.block_headers(ctx.chain.rpc, sorted(numbers))
    if chunk.last not in headers:
        raise ChainMovedDuringRead(f"block {chunk.last} vanished")
    for d in decoded:
        if headers.get(d.block_number, {}).get("hash") != d.block_hash:
            raise ChainMovedDuringRead(f"block {d.block_number}")
    with ctx.write() as s:
        # Core inserts: the mirror runs beside the request threads, and the ORM's unit of work cost them CPU.
        conn = s.connection()
        if decoded:
            conn.execute(insert(ChainEvent), [_row(d, int(headers[d.block_number]["timestamp"], 16)) for d in decoded])
        conn.execute(insert(MirrorBlock), [{"number": n, "hash": headers[n]["hash"]} for n in sorted(numbers)])
        oldest_kept = s.exec(
            select(MirrorBlock.number).order_by(col(MirrorBlock.number).desc()).offset(KEEP_HASHES).limit(1)
        ).first()
        if oldest_kept is not None:
            s.exec(delete(MirrorBlock).where(col(MirrorBlock.number) <= oldest_kept))
        s.commit()


def _row(d: DecodedEvent, timestamp: int) -> dict[str, Any]:
    a = d.args
    account = next((a[k] for k in ("enterprise", "holder", "account", "from") if k in a), None)
    if d.name == "TransferSingle" and account == "0x" + "0" * 40:
        account = a["to"]  # a mint: the holder is the receiver
    amount = a.get("amount", a.get("value"))
    programme = a.get("programmeId", a.get("id"))
    return {
        "block_number": d.block_number,
        "block_hash": d.block_hash,
        "block_time": datetime.fromtimestamp(timestamp, UTC),
        "tx_hash": d.tx_hash,
        "log_index": d.log_index,
        "name": d.name,
        "programme_id": programme if isinstance(programme, int) and programme <= INT64_MAX else None,
        "account": account,
        "provider": a.get("provider"),
        "amount": amount if isinstance(amount, int) and amount <= INT64_MAX else None,
        "args": json.dumps(_jsonable(a), separators=(",", ":")),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)  # uint256 passes what JSON readers keep exactly
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def event_count(ctx: Context) -> int:
    with ctx.read() as s:
        return int(s.exec(select(func.count()).select_from(ChainEvent)).one())


class Indexer(Periodic):
    """Keeps the mirror following the chain in the background."""

    name = "event-mirror"

    def step(self) -> None:
        sync(self._ctx)
