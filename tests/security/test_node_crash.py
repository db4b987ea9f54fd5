"""A node killed hard, again and again, under load and during its dumps, comes back every time with a chain
that `voucher audit verify` passes: dumps are written atomically, checked before loading, and an older good
one takes over from a cut or inconsistent one."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from backend.audit.verify import verify
from backend.chain import devnet
from backend.chain.deploy import Deployment, ensure_deployed
from tests.polling import eventually
from tests.support import ENTERPRISE, ISSUER_ROLE, PROVIDER, Ledger, ledger_of, raw_transaction

KILLS = 20


class Load:
    """Two senders writing to the ledger through the gateway as fast as it takes them, errors shrugged off
    (the node is down half the time): the admin registers participants, the issuer issues a fen to them."""

    def __init__(self, data_dir: Path, ledger: Ledger, programme: int, enterprises: Sequence[str]) -> None:
        self.record = data_dir / "deployment.json"
        self.url = Deployment.load(self.record).rpc_url
        self.http = httpx.Client(headers=devnet.auth_headers(data_dir), timeout=5)
        self.ledger, self.programme, self.enterprises = ledger, programme, enterprises
        self.stop = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self._run, args=(who,), daemon=True) for who in ("admin", "issuer")]

    def _rpc(self, method: str, params: list[Any]) -> Any:
        return self.http.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).json()

    def _run(self, who: str) -> None:
        sender: LocalAccount = getattr(self.ledger, who)
        f = self.ledger.contract.functions
        while not self.stop.is_set():
            try:
                nonce = int(self._rpc("eth_getTransactionCount", [sender.address, "pending"])["result"], 16)
                for i in range(5):
                    if who == "admin":
                        call = f.registerParticipant(Account.create().address, ENTERPRISE, os.urandom(32))
                    else:
                        call = f.issue(self.programme, random.choice(self.enterprises), 1, os.urandom(32))
                    tx = raw_transaction(sender, call, gas=300_000, nonce=nonce + i, chainId=self.ledger.chain_id)
                    raw = "0x" + tx.hex()
                    if "result" in self._rpc("eth_sendRawTransaction", [raw]):
                        self.sent += 1
                time.sleep(0.05)
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                time.sleep(0.1)
                self.url = Deployment.load(self.record).rpc_url  # a restarted devnet may serve on another port

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        self.http.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    try:
        yield tmp_path
    finally:
        devnet.down(tmp_path)


def _wait_serving(data_dir: Path, timeout: float = 60) -> str:
    def serving() -> str | None:
        info = devnet.status(data_dir)
        url = Deployment.load(data_dir / "deployment.json").rpc_url if info is None else info.rpc_url
        answer = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
        return url if answer.status_code == 200 and "result" in answer.json() else None

    return eventually(serving, timeout, 0.05, ignoring=(httpx.HTTPError,), message="the devnet did not come back")


def _wait_for_a_dump(data_dir: Path, timeout: float = 20) -> None:
    marker = data_dir / "node" / "dumped"
    before = marker.stat().st_mtime_ns if marker.is_file() else 0
    eventually(lambda: marker.is_file() and marker.stat().st_mtime_ns != before, timeout, 0.02,
               message="no dump was written while the load ran")  # fmt: skip


def _wait_restarted(data_dir: Path, killed: int) -> None:
    pid_file = data_dir / "node" / "anvil.pid"
    eventually(lambda: int(pid_file.read_text()) != killed, 60, 0.05, message="the supervisor did not restart anvil")


def _kill_during_a_dump(data_dir: Path) -> None:
    """SIGKILL of the whole devnet while it writes a dump (when the window is caught), else at once."""
    tmp = data_dir / "node" / "state.json.gz.tmp"
    deadline = time.monotonic() + 3
    while not tmp.exists() and time.monotonic() < deadline:
        time.sleep(0.0005)
    devnet.kill_hard(data_dir)


def test_a_node_killed_twenty_times_under_load_always_comes_back_verifiable(data_dir: Path) -> None:
    info = devnet.up(data_dir, port=0, block_time=devnet.DEFAULT_BLOCK_TIME)
    deployment = ensure_deployed(data_dir, info.rpc_url)
    ledger = ledger_of(data_dir, deployment)
    ledger.send(ledger.contract.functions.grantRole(ISSUER_ROLE, ledger.issuer.address), ledger.admin)
    provider = ledger.new_participant(PROVIDER)
    programme = ledger.create_programme([provider.address], budget=10**15, capPerEnterprise=10**12)
    enterprises = [ledger.new_participant(ENTERPRISE).address for _ in range(5)]
    devnet.dump_now(data_dir)  # the ledger itself is never lost: what follows may be
    path = data_dir / "deployment.json"
    rng = random.Random(20261202)
    heads, modes = [], []
    with Load(data_dir, ledger, programme, enterprises) as load:
        for kill in range(KILLS):
            _wait_for_a_dump(data_dir)  # what the load did so far is kept: the chain must grow across kills
            time.sleep(rng.uniform(0.0, 2.5))
            mode = ("node", "during-dump", "whole")[kill % 3]
            if mode == "node":  # anvil alone: its supervisor restarts it from the last good dump
                _wait_restarted(data_dir, killed=devnet.kill_node(data_dir))
            else:
                _kill_during_a_dump(data_dir) if mode == "during-dump" else devnet.kill_hard(data_dir)
                devnet.up(data_dir, port=0, block_time=devnet.DEFAULT_BLOCK_TIME)
                ensure_deployed(data_dir, devnet.status(data_dir).rpc_url)  # type: ignore[union-attr]
            url = _wait_serving(data_dir)
            report = verify(path, url)
            assert report.violations == [], (kill, mode, report.violations)
            heads.append(report.last)
            modes.append(mode)
        assert load.sent > 2 * KILLS, "the load did not run"
    assert len(heads) == KILLS and len(set(heads)) > KILLS // 2  # the chain kept growing between kills
    log = (data_dir / "devnet.log").read_text()
    assert log.count("anvil exited") >= modes.count("node")
