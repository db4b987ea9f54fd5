"""Redemption throughput, measured three ways in one run on the devnet as the service runs it by default
(a block every 0.25 s, 300M block gas limit):

1. the node's own ceiling: pre-signed redeem transactions in JSON-RPC batches of 20, sent straight to anvil's
   private socket and through the permissioned gateway (medians of alternated runs);
2. a plain web3.py script doing the same redemptions one after another (sign, send, wait for the receipt);
3. end to end through the HTTP API: claim + confirm (consent signed, burn mined, recorded), many providers
   and enterprises at once, with p50/p99 latency of a confirm.

Usage: .venv/bin/python scripts/bench_redeem.py [--redemptions 3000] [--concurrency 256] [--workers 1]
       [--ceiling-rounds 3] [--ceiling-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.chain import devnet
from backend.chain.deploy import ensure_deployed
from scripts.benchlib import ApiWorld, DirectWorld, start_service, stop_service


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redemptions", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--workers", type=int, default=1, help="API worker processes")
    parser.add_argument("--sequential", type=int, default=20, help="redemptions in the plain web3.py run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--ceiling-rounds", type=int, default=3, help="node ceiling runs per path (medians)")
    parser.add_argument("--ceiling-only", action="store_true", help="measure the node ceiling paths and stop")
    parser.add_argument("--in-flight", type=int, default=4, help="node ceiling: batches sent at once")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-redeem-") as tmp:
        data_dir = Path(tmp)
        info = devnet.up(data_dir, port=0, block_time=devnet.DEFAULT_BLOCK_TIME)
        service = None
        try:
            ensure_deployed(data_dir, info.rpc_url)
            direct = DirectWorld(data_dir, info.rpc_url, providers=20, enterprises=20)
            # Alternated, so that the machine's noise falls on both alike; medians compared.
            direct_runs, gateway_runs = [], []
            for _ in range(args.ceiling_rounds):
                for through, runs in ((False, direct_runs), (True, gateway_runs)):
                    rate = node_ceiling(direct, args.redemptions, through_gateway=through, in_flight=args.in_flight)
                    runs.append(rate)
            ceiling, through_gateway = statistics.median(direct_runs), statistics.median(gateway_runs)
            if args.ceiling_only:
                print(json.dumps({"direct_per_s": [round(r) for r in direct_runs],
                                  "gateway_per_s": [round(r) for r in gateway_runs]}))  # fmt: skip
                print(f"node ceiling, private socket:  {ceiling:8.1f} redemptions/s (median of {len(direct_runs)})")
                print(f"node ceiling, through gateway: {through_gateway:8.1f} redemptions/s "
                      f"({through_gateway / ceiling:.0%} of direct)")  # fmt: skip
                return 0
            sequential = web3_sequential(direct, args.sequential)
            service = start_service(data_dir, workers=args.workers)
            api_world = ApiWorld(service.url, data_dir, providers=20, enterprises=40, redemptions=args.redemptions)
            try:
                rate, latencies = asyncio.run(through_api(api_world, args.redemptions, args.concurrency))
            except BaseException:
                print((data_dir / "service.log").read_text()[-3000:], file=sys.stderr)
                raise
            onchain = api_world.check_chain(info.rpc_url)
        finally:
            if service is not None:
                stop_service(service)
            devnet.down(data_dir)

    q = statistics.quantiles(latencies, n=100)
    figures = {
        "redemptions": args.redemptions,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "node_ceiling_per_s": round(ceiling, 1),
        "node_ceiling_through_gateway_per_s": round(through_gateway, 1),
        "web3_sequential_per_s": round(sequential, 2),
        "api_confirmed_per_s": round(rate, 1),
        "ratio_api_to_ceiling": round(rate / ceiling, 3),
        "confirm_p50_s": round(q[49], 3),
        "confirm_p99_s": round(q[98], 3),
        "burns_on_chain": onchain,
    }
    print(f"node ceiling (pre-signed, batches of 20): {figures['node_ceiling_per_s']:>8} redemptions/s")
    print(f"  ... through the permissioned gateway:   {figures['node_ceiling_through_gateway_per_s']:>8} redemptions/s")
    print(f"plain web3.py, one after another:         {figures['web3_sequential_per_s']:>8} redemptions/s")
    print(
        f"through the API (claim + confirm):        {figures['api_confirmed_per_s']:>8} redemptions/s "
        f"({args.concurrency} at once, {args.workers} worker(s))"
    )
    print(f"ratio API / ceiling:                      {figures['ratio_api_to_ceiling']:>8}")
    print(f"confirm latency p50 / p99:                {figures['confirm_p50_s']} s / {figures['confirm_p99_s']} s")
    print(f"burns found on chain:                     {onchain} of {args.redemptions}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0 if onchain == args.redemptions else 1


if __name__ == "__main__":
    sys.exit(main())
