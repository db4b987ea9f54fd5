"""How often the service's background work reads the chain: a devnet of its own, the service under uvicorn with
N worker processes talking to the node through a proxy that counts JSON-RPC calls by method, and the calls per
second over a window once the workers are up, while a sender outside the service registers a participant every
`--every` seconds (new blocks and logs for the event mirror). The event mirror and the transaction monitor run
in one elected process, so their reads should not grow with N; each worker's block follower does.

Usage: .venv/bin/python scripts/bench_background.py [--workers 2] [--seconds 30] [--database-url URL]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
from eth_account import Account
from web3 import Web3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.chain import devnet
from backend.chain.deploy import admin_account, ensure_deployed
from backend.chain.rpc import Rpc
from backend.services.wiring import build_context
from backend.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def label(method: str, params: list[object]) -> str:
    """The method, and for block reads whether the head ("latest", the block follower) or a numbered block."""
    if method == "eth_getBlockByNumber":
        return f"{method} {'latest' if params and params[0] == 'latest' else 'N'}"
    if method == "eth_getTransactionCount":
        return f"{method} {params[-1] if params else ''}"
    return method


class CountingProxy(BaseHTTPRequestHandler):
    node_url = ""
    counts: ClassVar[collections.Counter[str]] = collections.Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        calls = json.loads(body)
        with self.lock:
            for call in calls if isinstance(calls, list) else [calls]:
                self.counts[label(call["method"], call.get("params") or [])] += 1
        headers = {"Content-Type": "application/json", "Authorization": self.headers.get("Authorization", "")}
        with urllib.request.urlopen(urllib.request.Request(self.node_url, body, headers), timeout=30) as answer:
            data = answer.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def outside_load(data_dir: Path, rpc_url: str, every_s: float, stop: threading.Event) -> None:
    """The admin key registers participants straight on the node, not through the proxy: blocks with logs."""
    dep = ensure_deployed(data_dir, rpc_url)
    rpc = Rpc(rpc_url, token=devnet.token(data_dir))
    contract = Web3().eth.contract(address=Web3.to_checksum_address(dep.voucher.address), abi=dep.voucher.abi)
    admin = admin_account(data_dir)
    while not stop.wait(every_s):
        tx = contract.functions.registerParticipant(Account.create().address, 1, os.urandom(32)).build_transaction(
            {"from": admin.address, "nonce": rpc.pending_nonce(admin.address), "gasPrice": 0, "gas": 200_000,
             "chainId": dep.chain_id}
        )  # fmt: skip
        rpc.call("eth_sendRawTransaction", ["0x" + bytes(admin.sign_transaction(tx).raw_transaction).hex()])
    rpc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between outside transactions")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite in the data folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-background-") as tmp:
        data_dir = Path(tmp)
        info = devnet.up(data_dir, port=0, block_time=devnet.DEFAULT_BLOCK_TIME)
        try:
            ensure_deployed(data_dir, info.rpc_url)
            settings = Settings(data_dir=data_dir, database_url=args.database_url)
            build_context(settings).close()  # bootstrap once, as `voucher serve` does
            handler = type("Proxy", (CountingProxy,), {"node_url": info.rpc_url, "counts": collections.Counter()})
            proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            port = devnet.free_port()
            env = {**os.environ, "VOUCHER_DATA_DIR": str(data_dir),
                   "VOUCHER_RPC_URL": f"http://127.0.0.1:{proxy.server_address[1]}"}  # fmt: skip
            if args.database_url:
                env["DATABASE_URL"] = args.database_url
            service = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "backend.api.main:app", "--port", str(port),
                 "--workers", str(args.workers), "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert service.poll() is None and time.monotonic() < deadline, "the service did not start"
                    time.sleep(0.2)
                stop = threading.Event()
                load = threading.Thread(target=outside_load, args=(data_dir, info.rpc_url, args.every, stop))
                load.start()
                time.sleep(args.warmup)  # every worker up, its first passes done
                with handler.lock:
                    handler.counts.clear()
                time.sleep(args.seconds)
                with handler.lock:
                    counts = dict(handler.counts)
                stop.set()
                load.join()
            finally:
                service.terminate()
                service.wait(timeout=30)
                proxy.shutdown()
        finally:
            devnet.down(data_dir)
    total = sum(counts.values())
    print(
        f"{args.workers} workers, {args.seconds:.0f} s, an outside transaction every {args.every} s: "
        f"{total / args.seconds:.1f} chain calls/s"
    )
    for method, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {method:32} {n / args.seconds:7.2f}/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
