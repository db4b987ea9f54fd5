"""Reads a contract's logs in bounded block ranges, and the blocks they sit in, without asking a node for
more than it will answer in one call. Shared by the event mirror and `voucher audit verify`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from backend.chain.rpc import Rpc, RpcError

DEFAULT_STEP = 5_000  # blocks per eth_getLogs; halved while a node refuses a range as too large
BATCH = 20  # calls per JSON-RPC batch: larger batches have hung anvil


@dataclass(frozen=True)
class LogRange:
    first: int
    last: int
    logs: list[dict[str, Any]]


def scan(rpc: Rpc, address: str, first: int, last: int, *, step: int = DEFAULT_STEP) -> Iterator[LogRange]:
    """The logs of `address` from block `first` to `last` inclusive, in order, one range at a time."""
    start = first
    while start <= last:
        end = min(start + step - 1, last)
        try:
            logs = rpc.call("eth_getLogs", [{"address": address, "fromBlock": hex(start), "toBlock": hex(end)}])
        except RpcError:
            if end == start:
                raise
            step = max(1, step // 2)  # e.g. Besu's or a provider's cap on results per call
            continue
        yield LogRange(start, end, list(logs or []))
        start = end + 1


def block_headers(rpc: Rpc, numbers: list[int]) -> dict[int, dict[str, Any]]:
    """Block number -> header (hash, timestamp, ...), fetched in small batches."""
    headers: dict[int, dict[str, Any]] = {}
    wanted = sorted(set(numbers))
    for i in range(0, len(wanted), BATCH):
        chunk = wanted[i : i + BATCH]
        for number, block in zip(
            chunk, rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in chunk]), strict=True
        ):
            if block is not None:
                headers[number] = block
    return headers
