"""However many service processes share a database, one of them runs the event mirror and the transaction
monitor, and when it is killed another takes over within seconds. Each process reaches the node through a
proxy of its own that counts its calls, so what each one reads and sends is seen."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from eth_account import Account
from sqlalchemy import text
from sqlmodel import select

from backend.chain.deploy import Deployment
from backend.chain.txtypes import Call
from backend.db import make_engine
from backend.models import ChainTx
from backend.models.states import TxKind
from backend.services.context import Context
from backend.services.runner import AdvisoryLock, Runner, lock_key
from backend.services.wiring import build_context
from backend.settings import Settings
from tests.factory import ServiceFactory, backends
from tests.polling import eventually
from tests.rpc_proxy import forward, reply
from tests.service_process import ServiceProcess

MIRROR = ("eth_blockNumber", "eth_getLogs")  # each pass of the event mirror asks for the head, then the logs
MONITOR = ("eth_getTransactionReceipt", "eth_sendRawTransaction")  # what finishing a stored transaction takes


class CountingProxy:
    """Passes JSON-RPC on to the node, counting the calls by method."""

    def __init__(self, node_url: str) -> None:
        counts = self.counts = Counter[str]()
        lock = self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                calls, data = forward(self, node_url)
                with lock:
                    counts.update(c["method"] for c in calls)
                reply(self, data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self, *methods: str) -> int:
        with self.lock:
            return sum(self.counts[m] for m in methods)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class World:
    ctx: Context  # beside the processes, on the same data and database: makes blocks, stores transactions
    procs: list[ServiceProcess]
    proxies: list[CountingProxy]
    admin_key: str


@pytest.fixture(scope="module")
def world(services: ServiceFactory, deployment: Deployment, database_url: str) -> Iterator[World]:
    data_dir = services.folder("runner")
    proxies = [CountingProxy(deployment.rpc_url) for _ in range(2)]
    procs = [ServiceProcess(data_dir, database_url, VOUCHER_RPC_URL=p.url) for p in proxies]
    ctx = None
    try:
        for proc in procs:
            proc.start()
        ctx = build_context(Settings(data_dir=data_dir, database_url=database_url))
        yield World(ctx, procs, proxies, (data_dir / "admin-api-key").read_text().strip())
    finally:
        for proc in procs:
            proc.stop()
        if ctx is not None:
            ctx.close()
        for p in proxies:
            p.close()


def register(ctx: Context) -> str:
    """A new block with a log in it, sent by the test's own context (not through either proxy)."""
    account = Account.create().address
    ctx.chain.send(ctx.operators["admin"], "registerParticipant", account, 1, os.urandom(32), kind=TxKind.REGISTER)
    return str(account)


def store_unsent(ctx: Context) -> str:
    """A transaction signed and stored, whose process died before sending it: only a monitor finishes it."""
    supervisor = ctx.operators["supervisor"]
    ctx.pipeline.prepare(supervisor)
    data = ctx.chain.encode("anchor", os.urandom(32), b"runner test".ljust(32, b"\0"))
    call = Call(TxKind.ANCHOR, data, "", 200_000)
    stored = ctx.writer.run(lambda conn: ctx.pipeline.store(conn, supervisor, call))
    return stored.tx_hash


def status(ctx: Context, tx_hash: str) -> str:
    with ctx.read() as s:
        return s.exec(select(ChainTx.status).where(ChainTx.tx_hash == tx_hash)).one()


@pytest.mark.both_databases
def test_one_process_runs_the_background_work_and_another_takes_over_when_it_is_killed(world: World) -> None:
    ctx, proxies = world.ctx, world.proxies
    before = [(p.seen(*MIRROR), p.seen(*MONITOR)) for p in proxies]
    logs_read = [p.seen("eth_getLogs") for p in proxies]
    pending = store_unsent(ctx)
    register(ctx)
    eventually(lambda: status(ctx, pending) == "confirmed")  # a monitor sent it and recorded its receipt
    eventually(lambda: any(p.seen("eth_getLogs") > n for p, n in zip(proxies, logs_read, strict=True)))
    runner = next(i for i, p in enumerate(proxies) if p.seen("eth_getLogs") > logs_read[i])  # whose mirror read it
    other = 1 - runner
    assert proxies[runner].seen(*MONITOR) > before[runner][1]
    assert (proxies[other].seen(*MIRROR), proxies[other].seen(*MONITOR)) == before[other]  # it read nothing

    # The other process answers from the audit trail all the same: it brings the mirror up to the head itself.
    account, heads_read = register(ctx), proxies[other].seen("eth_blockNumber")
    answer = httpx.get(
        f"{world.procs[other].url}/v1/audit/events",
        params={"event": "ParticipantRegistered", "limit": 1000},
        headers={"Authorization": f"Bearer {world.admin_key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert account in {e["account"] for e in answer.json()["events"]}
    assert proxies[other].seen("eth_blockNumber") > heads_read

    killed = world.procs[runner].proc
    assert killed is not None
    killed.kill()
    killed.wait(10)
    logs_before = proxies[other].seen("eth_getLogs")
    pending = store_unsent(ctx)
    register(ctx)
    # within the retry period (2 s) and a pass, the other process's mirror follows the chain ...
    eventually(lambda: proxies[other].seen("eth_getLogs") > logs_before, timeout=15)
    eventually(lambda: status(ctx, pending) == "confirmed")  # ... and its monitor finishes what is stored


class Probe:
    """Stands for the background work: whether it runs."""

    def __init__(self) -> None:
        self.running = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.skipif(
    "postgresql" not in backends(), reason="no PostgreSQL reachable"))], indirect=True)  # fmt: skip
def test_a_runner_whose_database_session_ends_stops_its_work(database_url: str) -> None:
    """The server ends the session holding the advisory lock (a restart, an idle timeout): the lock went with
    it, so the work stops there; one runner, whichever, runs it again."""
    engine = make_engine(database_url)
    key = lock_key(1, "0x" + "ab" * 20)
    holders = text(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid::bigint = :low "
        "AND classid::bigint = :high AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).bindparams(low=key & 0xFFFFFFFF, high=(key >> 32) & 0xFFFFFFFF)
    probes: list[Probe] = []

    def work() -> list[Probe]:
        probes.append(Probe())
        return probes[-1:]

    runners = [Runner(AdvisoryLock(engine, key), work, retry_s=0.1) for _ in range(2)]
    try:
        runners[0].start()
        eventually(lambda: runners[0].leading)
        runners[1].start()
        with engine.connect() as conn:
            (holder,) = conn.execute(holders).scalars().all()
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder}).scalar() is True
        eventually(lambda: not probes[0].running)
        eventually(lambda: sum(r.leading for r in runners) == 1)
        assert [p.running for p in probes] == [False, True]
    finally:
        for r in runners:
            r.stop()
    with engine.connect() as conn:  # stopped runners let go: nothing holds the lock any more
        assert conn.execute(holders).all() == []
    engine.dispose()
