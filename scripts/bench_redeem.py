"""Redemption throughput, measured three ways in one run on the devnet as the service runs it by default
(a block every 0.25 s, 300M block gas limit):

1. the node's own ceiling: pre-signed redeem transactions in JSON-RPC batches of 20, sent straight to anvil's
   private socket and through the permissioned gateway (medians of alternated runs);
2. a plain web3.py script doing the same redemptions one after another (sign, send, wait for the receipt);
3. end to end through the HTTP API: claim + confirm (consent signed, burn mined, recorded), many providers
   and enterprises at once, with p50/p99 latency of a confirm and the service's CPU time per redemption; at 20
   and 200 clients at once, with 1 and 2 worker processes, on SQLite and on PostgreSQL (a service and a
   database of its own each).

Usage: .venv/bin/python scripts/bench_redeem.py [--redemptions 2000] [--concurrency 20 200] [--workers 1 2]
       [--databases sqlite postgresql] [--ceiling-rounds 3] [--ceiling-only] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.chain import devnet
from backend.chain.deploy import ensure_deployed
from scripts.benchlib import (
    ApiWorld,
    DirectWorld,
    cpu_seconds,
    fresh_postgres,
    service_folder,
    service_pids,
    start_service,
    stop_service,
)

PG_URL = os.environ.get("VOUCHER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def node_ceiling(world: DirectWorld, count: int, *, through_gateway: bool, in_flight: int) -> float:
    """Pre-signed redeems in batches of 20, `in_flight` batches at a time (as a busy service sends them),
    straight to anvil's private socket or through the permissioned gateway (token, allowlist, recipient and
    caps checked for each), until every one is mined."""
    raws = world.presigned_redeems(count)
    send = world.rpc_batch if through_gateway else world.ipc_batch
    batches = [[("eth_sendRawTransaction", ["0x" + r.hex()]) for r in raws[i : i + 20]] for i in range(0, count, 20)]
    start = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(send, batches))
    world.wait_all_mined()
    return count / (time.perf_counter() - start)


def web3_sequential(world: DirectWorld, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        world.redeem_with_web3()
    return count / (time.perf_counter() - start)


async def through_api(world: ApiWorld, count: int, concurrency: int) -> tuple[float, list[float]]:
    # aiohttp, not httpx: at 200 connections httpx's pool used a whole core in this process and became the limit.
    latencies: list[float] = []
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(world.url, connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                claim_req, confirm_path, enterprise_key = world.claim_request(i)
                async with http.post("/v1/redemptions", **claim_req) as r:
                    body = await r.json()
                    if r.status != 201:
                        failures.append(str(body))
                        return
                t0 = time.perf_counter()
                async with http.post(confirm_path(body["id"]), headers={"Authorization": enterprise_key}) as r:
                    done = await r.json()
                latencies.append(time.perf_counter() - t0)
                if r.status != 200 or done["status"] != "confirmed":
                    failures.append(str(done))

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} redemptions failed, e.g. {failures[0][:300]}")
    return count / elapsed, latencies


@dataclass
class ApiRun:
    database: str
    workers: int
    concurrency: int
    rate: float
    p50: float
    p99: float
    cpu_ms: float  # the service's CPU time per redemption (all its processes)


def api_runs(args: argparse.Namespace, devnet_dir: Path, rpc_url: str, ceiling: float) -> list[ApiRun]:
    """The API at each concurrency, for each database and number of workers, each on a service of its own."""
    runs: list[ApiRun] = []
    for database in args.databases:
        for workers in args.workers:
            folder = service_folder(devnet_dir, devnet_dir / f"service-{database}-{workers}")
            url = fresh_postgres(args.pg) if database == "postgresql" else None
            service = start_service(folder, workers=workers, database_url=url)
            try:
                world = ApiWorld(service.url, folder, providers=20, enterprises=40, redemptions=0)
                for concurrency in args.concurrency:
                    before = cpu_seconds(service_pids(service))
                    rate, latencies = asyncio.run(through_api(world, args.redemptions, concurrency))
                    cpu = cpu_seconds(service_pids(service)) - before
                    q = statistics.quantiles(latencies, n=100)
                    run = ApiRun(database, workers, concurrency, rate, q[49], q[98], cpu / args.redemptions * 1000)
                    runs.append(run)
                    print(f"API {database:10} {workers} worker(s) {concurrency:4} at once: {rate:7.1f}/s "
                          f"(ratio {rate / ceiling:.3f}), p50 {run.p50:.3f} s, p99 {run.p99:.3f} s, "
                          f"service CPU {run.cpu_ms:.1f} ms per redemption", flush=True)  # fmt: skip
                found = world.check_chain(rpc_url)
                if found != args.redemptions * len(args.concurrency):
                    raise SystemExit(f"{found} burns on chain for {args.redemptions * len(args.concurrency)} confirmed")
            except BaseException:
                print((folder / "service.log").read_text()[-3000:], file=sys.stderr)
                raise
            finally:
                stop_service(service)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redemptions", type=int, default=2000, help="per API run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[20, 200], help="clients at once")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="API worker processes")
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--pg", default=PG_URL, help="a PostgreSQL server where the benchmark may create databases")
    parser.add_argument("--sequential", type=int, default=20, help="redemptions in the plain web3.py run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--ceiling-rounds", type=int, default=3, help="node ceiling runs per path (medians)")
    parser.add_argument("--ceiling-only", action="store_true", help="measure the node ceiling paths and stop")
    parser.add_argument("--in-flight", type=int, default=4, help="node ceiling: batches sent at once")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-redeem-") as tmp:
        data_dir = Path(tmp)
        info = devnet.up(data_dir, port=0, block_time=devnet.DEFAULT_BLOCK_TIME)
        try:
            ensure_deployed(data_dir, info.rpc_url)
            direct = DirectWorld(data_dir, info.rpc_url, providers=20, enterprises=20)
            # Alternated, so that the machine's noise falls on both alike; medians compared.
            direct_runs: list[float] = []
            gateway_runs: list[float] = []
            for _ in range(args.ceiling_rounds):
                for through, runs in ((False, direct_runs), (True, gateway_runs)):
                    rate = node_ceiling(direct, args.redemptions, through_gateway=through, in_flight=args.in_flight)
                    runs.append(rate)
            ceiling, through_gateway = statistics.median(direct_runs), statistics.median(gateway_runs)
            print(f"node ceiling, private socket:  {ceiling:8.1f} redemptions/s (median of {len(direct_runs)})")
            print(f"node ceiling, through gateway: {through_gateway:8.1f} redemptions/s "
                  f"({through_gateway / ceiling:.0%} of direct)", flush=True)  # fmt: skip
            if args.ceiling_only:
                return 0
            sequential = web3_sequential(direct, args.sequential)
            print(f"plain web3.py, one after another: {sequential:8.2f} redemptions/s", flush=True)
            runs = api_runs(args, data_dir, info.rpc_url, ceiling)
        finally:
            devnet.down(data_dir)
    figures = {
        "node_ceiling_per_s": round(ceiling, 1),
        "node_ceiling_through_gateway_per_s": round(through_gateway, 1),
        "web3_sequential_per_s": round(sequential, 2),
        "api": [dict(r.__dict__, ratio=round(r.rate / ceiling, 3)) for r in runs],
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
