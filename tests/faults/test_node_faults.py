"""The chain node fails under a running service: it goes down, it comes back from an older state (anvil
killed and restored from an earlier dump), it loses the answer to a broadcast, it refuses a transaction.
Nothing is lost, nothing is applied twice, and the database ends equal to the chain."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import rlp
from sqlmodel import Session, select

from backend.chain import devnet
from backend.chain.deploy import admin_account, ensure_deployed
from backend.chain.txtypes import Call
from backend.models import ChainTx
from backend.models.states import TxKind
from backend.services.monitor import Monitor
from tests.api.support import Api, Service, claim_body
from tests.factory import ServiceFactory
from tests.polling import eventually
from tests.rpc_proxy import forward, reply

Y = 100  # fen per yuan


@dataclass
class Node:
    data_dir: Path
    port: int

    def up(self) -> None:
        devnet.up(self.data_dir, port=self.port, block_time=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "chain", devnet.free_port())
    n.up()
    ensure_deployed(n.data_dir, n.url)
    try:
        yield n
    finally:
        devnet.down(n.data_dir)


def serve(node: Node, data_dir: Path, **settings: Any) -> Generator[Service, None, None]:
    """The service on this test's own node, in a folder at `data_dir`."""
    base: dict[str, Any] = {"receipt_wait_s": 3.0, "stuck_after_s": 2.0}
    return ServiceFactory(node.data_dir, tmp=None).serve(data_dir, **(base | settings))


@pytest.fixture
def api(node: Node, tmp_path: Path) -> Iterator[Api]:
    for service in serve(node, tmp_path / "service"):
        with Api(service) as client:
            yield client


@pytest.fixture
def monitor(api: Api) -> Iterator[Monitor]:
    m = Monitor(api.service.ctx, interval_s=0.2)
    m.start()
    try:
        yield m
    finally:
        m.stop()


def reconciled(api: Api) -> bool:
    return bool(api.ok(api.get("/v1/audit/reconciliation"))["differences"] == [])


def claim(api: Api, provider: dict[str, Any], enterprise: dict[str, Any], pid: int, invoice: int) -> httpx.Response:
    as_provider = api.as_(api.key_for("provider", provider["id"]))
    return as_provider.post("/v1/redemptions", claim_body(enterprise["id"], pid, invoice))


def scene(api: Api, amount: int = 100_000 * Y) -> tuple[dict[str, Any], dict[str, Any], int]:
    provider, enterprise = api.provider(), api.enterprise()
    pid = api.programme([provider["id"]])["id"]
    api.fund(enterprise, pid, amount)
    return provider, enterprise, pid


def test_a_node_that_is_down_fails_fast_and_nothing_is_written(node: Node, api: Api) -> None:
    provider, enterprise, pid = scene(api)
    pending = api.ok(claim(api, provider, enterprise, pid, 2_000 * Y), 201)
    as_e = api.as_(api.key_for("enterprise", enterprise["id"]))
    txs = api.service.tx_count()
    devnet.down(node.data_dir)
    started = time.monotonic()
    refused = [
        claim(api, provider, enterprise, pid, 2_000 * Y),
        as_e.post(f"/v1/redemptions/{pending['id']}/confirm", key="confirm-while-down"),
        as_e.post("/v1/applications", {"programme_id": pid, "amount": 1_000 * Y, "purpose": "while down"}),
    ]
    assert time.monotonic() - started < 5  # fast: no request waits out a timeout
    for r in refused:
        assert (r.status_code, r.json()["error"]["code"]) == (503, "node_unavailable"), r.text
        assert "did not answer" in r.json()["error"]["message"]
    assert api.service.tx_count() == txs
    assert api.ok(api.get(f"/v1/redemptions/{pending['id']}"))["status"] == "pending"
    node.up()  # a clean restart keeps every block
    done = api.ok(as_e.post(f"/v1/redemptions/{pending['id']}/confirm", key="confirm-while-down"))
    assert done["status"] == "confirmed"
    assert reconciled(api)


def test_a_node_restored_from_an_older_state_gets_back_what_it_lost(node: Node, api: Api, monitor: Monitor) -> None:
    provider, enterprise, pid = scene(api)
    devnet.down(node.data_dir)  # a dump of the chain as it is now ...
    older = node.data_dir / "older-state.json.gz"
    shutil.copy2(node.data_dir / "node" / "state.json.gz", older)
    node.up()
    as_e = api.as_(api.key_for("enterprise", enterprise["id"]))
    burnt = []
    for _ in range(3):  # ... then work the chain will lose
        c = api.ok(claim(api, provider, enterprise, pid, 4_000 * Y), 201)
        burnt.append(api.ok(as_e.post(f"/v1/redemptions/{c['id']}/confirm")))
    second = api.enterprise()
    api.fund(second, pid, 30_000 * Y)
    devnet.kill_hard(node.data_dir)
    shutil.copy2(older, node.data_dir / "node" / "state.json.gz")
    (node.data_dir / "node" / "state.prev.json.gz").unlink(missing_ok=True)
    node.up()
    chain = api.service.ctx.chain
    assert all(not chain.call("isInvoiceRedeemed", bytes.fromhex(r["invoice_hash"][2:])) for r in burnt)
    eventually(lambda: reconciled(api))  # the monitor re-sent the lost transactions from their stored bytes
    for r in burnt:
        assert chain.call("isInvoiceRedeemed", bytes.fromhex(r["invoice_hash"][2:]))
        assert api.service.tx_count("redeem") == 3
    assert chain.balance(enterprise["address"], pid) == 94_000 * Y
    assert chain.balance(second["address"], pid) == 30_000 * Y
    # and the service goes on with the right nonces
    c = api.ok(claim(api, provider, enterprise, pid, 2_000 * Y), 201)
    assert api.ok(as_e.post(f"/v1/redemptions/{c['id']}/confirm"))["status"] == "confirmed"
    assert reconciled(api)


class _DropsBroadcastAnswers(BaseHTTPRequestHandler):
    """Passes JSON-RPC to the node, but for eth_sendRawTransaction hangs up after the node took it."""

    node_url = ""
    dropped: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        calls, data = forward(self, self.node_url)
        sends = [c for c in calls if c.get("method") == "eth_sendRawTransaction"]
        if sends:  # alone or in a batch
            type(self).dropped.extend(c["params"][0] for c in sends)
            self.close_connection = True
            return  # the node has the transaction; its answer never arrives
        reply(self, data)

    def log_message(self, *args: object) -> None:
        pass


def test_a_lost_answer_to_a_broadcast_sends_no_duplicate(node: Node, api: Api, tmp_path: Path) -> None:
    provider, enterprise, pid = scene(api)
    pending = api.ok(claim(api, provider, enterprise, pid, 6_000 * Y), 201)

    class Proxy(_DropsBroadcastAnswers):
        node_url = node.url
        dropped: ClassVar[list[str]] = []

    handler = Proxy
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        proxied = f"http://127.0.0.1:{proxy.server_address[1]}"
        second = tmp_path / "second"  # a second service process on the same database and keys, through the proxy
        second.mkdir()
        for name in ("master.key", "admin-api-key"):
            shutil.copy2(api.service.data_dir / name, second / name)
        for service in serve(node, second, rpc_url=proxied, database_url=api.service.ctx.settings.db_url):
            with Api(service, key=api.key) as other:
                as_e = other.as_(api.key_for("enterprise", enterprise["id"]))
                answer = as_e.post(f"/v1/redemptions/{pending['id']}/confirm", key="lost-answer")
                assert answer.status_code == 202, answer.text  # sent, its fate not yet known: tracked
                assert answer.json()["status"] == "submitting"
                m = Monitor(service.ctx, interval_s=0.2)
                m.start()
                try:
                    eventually(lambda: other.ok(other.get(f"/v1/redemptions/{pending['id']}"))["status"] == "confirmed")
                finally:
                    m.stop()
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert handler.dropped  # the answers really were lost
    with Session(api.service.ctx.engine) as s:
        redeems = s.exec(select(ChainTx).where(ChainTx.kind == "redeem", ChainTx.ref == str(pending["id"]))).all()
    assert len(redeems) == 1 and redeems[0].status == "confirmed"
    burns = api.ok(api.get("/v1/audit/events", event="VoucherRedeemed", limit=1000))["events"]
    assert [e["tx_hash"] for e in burns if e["args"]["invoiceHash"] == pending["invoice_hash"]] == [redeems[0].tx_hash]
    assert reconciled(api)


def test_a_transaction_the_node_refuses_is_dropped_and_its_nonce_filled(api: Api, monitor: Monitor) -> None:
    ctx = api.service.ctx
    _, enterprise, pid = scene(api)
    mine = api.as_(api.key_for("enterprise", enterprise["id"]))
    app = api.ok(mine.post("/v1/applications", {"programme_id": pid, "amount": 5_000 * Y, "purpose": "after"}), 201)
    issuer = ctx.operators["issuer"]
    with pytest.raises(Exception, match="refused transaction"):  # above the block gas limit: never mined
        ctx.chain.send(
            issuer, "issue", pid, enterprise["address"], 1, b"\0" * 32, kind=TxKind.ISSUE, ref="", gas=400_000_000
        )
    # the issuer's next transaction sits behind the refused one's nonce (202 if the wait runs out first) ...
    answer = api.issuer().post(f"/v1/applications/{app['id']}/approve", {})
    assert answer.status_code in (200, 202), answer.text
    # ... until the monitor gives the refused one up and fills its nonce
    eventually(lambda: api.ok(api.get(f"/v1/applications/{app['id']}"))["status"] == "issued")
    with Session(ctx.engine) as s:
        refused = s.exec(select(ChainTx).where(ChainTx.kind == "issue", ChainTx.ref == "")).one()
    assert (refused.status, refused.error_code) == ("dropped", "transaction_dropped")
    assert "will never be mined" in (refused.error or "")
    seen = api.ok(api.as_(api.key_for("supervisor")).get(f"/v1/transactions/{refused.tx_hash}"))
    assert (seen["status"], seen["error_code"], seen["nonce"]) == ("dropped", "transaction_dropped", refused.nonce)
    assert ctx.chain.balance(enterprise["address"], pid) == 105_000 * Y
    assert reconciled(api)


def test_a_transaction_whose_nonce_another_took_is_reported_replaced(api: Api, monitor: Monitor) -> None:
    ctx = api.service.ctx
    admin = ctx.operators["admin"]
    ctx.pipeline.prepare(admin)
    call = Call(TxKind.PAUSE, ctx.chain.encode("pause"), "", 100_000)
    # signed and stored, then its process died before sending it
    stored = ctx.writer.run(lambda conn: ctx.pipeline.store(conn, admin, call))
    nonce = rlp.decode(stored.raw)[0]
    key = admin_account(api.service.data_dir)  # the same key, used outside the service, takes that nonce
    pause: dict[str, Any] = {"to": ctx.chain.address, "data": "0x5c975abb", "gas": 40_000, "gasPrice": 0,
                             "nonce": int.from_bytes(nonce, "big"), "chainId": ctx.chain.chain_id}  # fmt: skip
    outside = key.sign_transaction(pause)
    ctx.chain.rpc.call("eth_sendRawTransaction", ["0x" + outside.raw_transaction.hex()])

    def status() -> str:
        with Session(ctx.engine) as s:
            return s.exec(select(ChainTx.status).where(ChainTx.tx_hash == stored.tx_hash)).one()

    eventually(lambda: status() == "replaced")
    assert not ctx.chain.paused()  # the stored transaction never ran, and never will
    assert api.ok(api.get("/v1/health"))["paused"] is False
