"""`voucher audit verify`: a supervisor's independent check of the ledger, from chain logs and state alone.

No database and no service: the deployment file gives the node, the contract and its first block. Logs are
read in bounded ranges up to the block that was newest when the audit began; every state read is made at
that same block, in JSON-RPC batches of at most 20 calls, so logs and state describe one moment of the chain.
Exit codes: 0 every invariant holds, 1 at least one violation, 2 the deployment file or node is unusable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from backend.audit.invariants import INVARIANTS, ChainState, Recomputed, Violation, check
from backend.chain import logscan
from backend.chain.abi import canonical_type
from backend.chain.deploy import Deployment
from backend.chain.hashing import event_topic, selector
from backend.chain.rpc import Rpc, RpcError
from backend.errors import NodeUnavailable

EXIT_OK, EXIT_VIOLATION, EXIT_UNUSABLE = 0, 1, 2
PAIRS_PER_CALL = 200  # (holder, id) pairs per balanceOfBatch call
PROGRESS_MIN_BLOCKS = 50_000  # below this, progress lines only when stderr is a terminal
RPC_TIMEOUT_S = 120.0  # one eth_getLogs range can carry a hundred thousand logs


class Unusable(Exception):
    """The deployment file or the node cannot be audited; the message says why, in one line."""


@dataclass(frozen=True)
class Report:
    address: str
    chain_id: int
    rpc_url: str
    first: int
    last: int
    block_hash: str
    recomputed: Recomputed
    chain: ChainState
    violations: list[Violation]
    seconds: float

    @property
    def event_count(self) -> int:
        return sum(self.recomputed.events.values())


def _selector(signature: str) -> str:
    return "0x" + selector(signature).hex()


def _word(value: int | str) -> str:
    return (value[2:] if isinstance(value, str) else f"{value:x}").rjust(64, "0")


def _words(result: str) -> list[int]:
    data = result[2:]
    return [int(data[i : i + 64], 16) for i in range(0, len(data), 64)]


class _Reader:
    """eth_call at one fixed block, in batches the node is known to answer."""

    def __init__(self, rpc: Rpc, address: str, block: int) -> None:
        self.rpc, self.address, self.tag = rpc, address, hex(block)

    def call(self, datas: list[str]) -> list[str]:
        results: list[str] = []
        for i in range(0, len(datas), logscan.BATCH):
            chunk = datas[i : i + logscan.BATCH]
            results += self.rpc.batch([("eth_call", [{"to": self.address, "data": d}, self.tag]) for d in chunk])
        return results

    def each(self, signature: str, args: Iterable[tuple[int | str, ...]]) -> list[list[int]]:
        selector = _selector(signature)
        return [_words(r) for r in self.call([selector + "".join(_word(a) for a in row) for row in args])]


def read_state(rpc: Rpc, address: str, block: int, r: Recomputed, abi: list[dict[str, Any]]) -> ChainState:
    reader = _Reader(rpc, address, block)
    count = reader.each("programmeCount()", [()])[0][0]
    pids = sorted(r.programme_ids | set(range(1, count + 1)))
    programmes = dict(zip(pids, map(tuple, reader.each("programme(uint256)", [(p,) for p in pids])), strict=True))
    pairs = sorted(r.balances)
    batch_sel = _selector("balanceOfBatch(address[],uint256[])")
    datas = []
    for i in range(0, len(pairs), PAIRS_PER_CALL):
        chunk = pairs[i : i + PAIRS_PER_CALL]
        n = len(chunk)
        head = _word(64) + _word(96 + 32 * n) + _word(n)
        datas.append(
            batch_sel + head + "".join(_word(h) for h, _ in chunk) + _word(n) + "".join(_word(p) for _, p in chunk)
        )
    values = [v for result in reader.call(datas) for v in _words(result)[2:]]  # skip offset and length
    issued_keys = sorted(r.issued_to)
    issued = reader.each("issuedTo(uint256,address)", issued_keys)
    invoices = list(r.invoices)
    redeemed = reader.each("isInvoiceRedeemed(bytes32)", [(h,) for h in invoices])
    digests = list(r.anchors)
    anchored = reader.each("anchoredAt(bytes32)", [(d,) for d in digests])
    has_supply = any(
        f.get("name") == "totalSupply" and [canonical_type(i) for i in f["inputs"]] == ["uint256"]
        for f in abi
        if f.get("type") == "function"
    )
    supply = reader.each("totalSupply(uint256)", [(p,) for p in pids]) if has_supply else None
    return ChainState(
        block=block,
        programmes=programmes,
        balances=dict(zip(pairs, values, strict=True)),
        issued_to={k: w[0] for k, w in zip(issued_keys, issued, strict=True)},
        invoices={h: bool(w[0]) for h, w in zip(invoices, redeemed, strict=True)},
        anchors={d: w[0] for d, w in zip(digests, anchored, strict=True)},
        total_supply=None if supply is None else {p: w[0] for p, w in zip(pids, supply, strict=True)},
    )


def _event_names(abi: list[dict[str, Any]]) -> dict[str, str]:
    names = {}
    for e in abi:
        if e.get("type") == "event":
            signature = f"{e['name']}({','.join(canonical_type(i) for i in e['inputs'])})"
            names["0x" + event_topic(signature).hex()] = str(e["name"])
    return names


def _load(path: Path) -> Deployment:
    try:
        deployment = Deployment.load(path)
        deployment.voucher  # noqa: B018 (a record without the voucher contract is no use here)
        return deployment
    except FileNotFoundError:
        raise Unusable(f"deployment file {path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Unusable(f"deployment file {path} is not a deployment record ({type(exc).__name__}: {exc})") from None


def verify(
    deployment_path: Path,
    rpc_url: str | None = None,
    *,
    progress: TextIO | None = None,
    progress_min_blocks: int = PROGRESS_MIN_BLOCKS,
) -> Report:
    """Scans every log of the deployment's contract, reads its state at the last block, checks every invariant.

    Raises `Unusable` when the file or the node cannot be used. `progress` receives a line per ~10% of the
    block range when the range spans at least `progress_min_blocks`.
    """
    started = time.perf_counter()
    deployment = _load(deployment_path)
    record = deployment.voucher
    url = rpc_url or deployment.rpc_url
    try:
        rpc = Rpc(url, timeout=RPC_TIMEOUT_S)
    except ValueError as exc:  # e.g. a port that is not a number
        raise Unusable(f"{url} is not a usable JSON-RPC URL ({exc})") from None
    try:
        chain_id = rpc.chain_id()
        if chain_id != deployment.chain_id:
            raise Unusable(f"the node at {url} is chain {chain_id}, but {deployment_path} is for {deployment.chain_id}")
        if rpc.code(record.address) in ("0x", "0x0", None):
            raise Unusable(f"the chain at {url} has no contract at {record.address}: wrong node, or its state was lost")
        last = rpc.block_number()
        first = record.deploy_block
        recomputed = Recomputed(names=_event_names(record.abi))
        span, mark = last - first + 1, 10
        if span < progress_min_blocks:
            progress = None
        for scanned in logscan.scan(rpc, record.address, first, last):
            recomputed.fold(scanned.logs)
            done = (scanned.last - first + 1) * 100 // max(span, 1)
            if progress is not None and done >= mark:
                events = sum(recomputed.events.values())
                print(f"scanned blocks {first}..{scanned.last} ({done}%), {events} events", file=progress)
                mark = done // 10 * 10 + 10
        header = logscan.block_headers(rpc, [last]).get(last, {})
        state = read_state(rpc, record.address, last, recomputed, record.abi)
    except NodeUnavailable as exc:
        raise Unusable(str(exc)) from None
    except RpcError as exc:
        raise Unusable(f"the node at {url} refused {exc.method}: {exc.message}") from None
    finally:
        rpc.close()
    return Report(
        address=record.address,
        chain_id=chain_id,
        rpc_url=url,
        first=first,
        last=last,
        block_hash=str(header.get("hash", "?")),
        recomputed=recomputed,
        chain=state,
        violations=check(recomputed, state),
        seconds=time.perf_counter() - started,
    )


def summary(report: Report) -> list[str]:
    r = report.recomputed
    lines = [
        f"audit of {report.address} on chain {report.chain_id} ({report.rpc_url})",
        f"blocks scanned: {report.first}..{report.last} ({report.last - report.first + 1} blocks); "
        f"state read at block {report.last} ({report.block_hash})",
        f"events: {report.event_count}",
        *(f"  {name:<24}{n:>10}" for name, n in sorted(r.events.items())),
        f"holders: {len(r.holders)}   programmes: {len(r.programme_ids | set(report.chain.programmes))}   "
        f"invoices: {len(r.invoices)}   anchors: {len(r.anchors)}",
        "",
    ]
    broken = {v.invariant for v in report.violations}
    lines += [f"{'✗' if name in broken else '✓'} {name:<20}{text}" for name, text in INVARIANTS.items()]
    rate = report.event_count / report.seconds if report.seconds > 0 else 0.0
    lines.append(f"verified {report.event_count} events in {report.seconds:.2f} s ({rate:,.0f} events/s)")
    return lines


def main(
    deployment_path: Path, rpc_url: str | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """The command: prints every violation and the summary; returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr  # looked up now, so redirected streams are honoured
    try:
        tty = err.isatty()
        report = verify(deployment_path, rpc_url, progress=err, progress_min_blocks=0 if tty else PROGRESS_MIN_BLOCKS)
    except Unusable as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNUSABLE
    for violation in report.violations:
        print(f"VIOLATION [{violation.invariant}] {violation.message}", file=out)
    if report.violations:
        print("", file=out)
    print("\n".join(summary(report)), file=out)
    if report.violations:
        print(f"FAILED: {len(report.violations)} violation(s)", file=out)
        return EXIT_VIOLATION
    print("OK: every invariant holds", file=out)
    return EXIT_OK
