"""Worlds for the redemption benchmark: one driven straight through web3 (own keys), one through the API."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from backend.chain import devnet
from backend.chain.consent import Redemption, sign_consent
from backend.chain.deploy import Deployment, admin_account
from backend.credit_code import with_check

ROOT = Path(__file__).resolve().parent.parent
ISSUER_ROLE = Web3.keccak(text="ISSUER_ROLE")


class DirectWorld:
    """Participants with keys the benchmark holds itself, registered and funded by the admin key."""

    def __init__(self, data_dir: Path, rpc_url: str, *, providers: int, enterprises: int) -> None:
        auth = devnet.auth_headers(data_dir)  # writes carry the node token
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 60, "headers": auth}))
        self.http = httpx.Client(timeout=60, headers=auth)
        self.rpc_url = rpc_url
        self.ipc_path = str(data_dir.resolve() / "node" / "anvil.ipc")  # the private node, behind the gateway
        self._ipc_local = threading.local()
        dep = Deployment.load(data_dir / "deployment.json")
        self.chain_id = dep.chain_id
        self.contract = self.w3.eth.contract(address=Web3.to_checksum_address(dep.voucher.address), abi=dep.voucher.abi)
        self.admin = admin_account(data_dir)
        self.issuer: LocalAccount = Account.create()
        self.providers: list[LocalAccount] = [Account.create() for _ in range(providers)]
        self.enterprises: list[LocalAccount] = [Account.create() for _ in range(enterprises)]
        self._nonces: dict[str, int] = {}
        self._consent_nonce = itertools.count()
        self._last: dict[str, str] = {}
        f = self.contract.functions
        everyone = [a.address for a in (self.issuer, *self.providers, *self.enterprises)]
        self.http.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "perm_addAccountsToAllowlist",
                                      "params": [everyone]}).raise_for_status()  # fmt: skip
        calls = [f.grantRole(ISSUER_ROLE, self.issuer.address)]
        calls += [f.registerParticipant(p.address, 2, b"\x00" * 32) for p in self.providers]
        calls += [f.registerParticipant(e.address, 1, b"\x00" * 32) for e in self.enterprises]
        self._send_all(self.admin, calls)
        now = self.w3.eth.get_block("latest")["timestamp"]
        params = (2**100, 2**90, 5000, now - 10, now + 365 * 86400, 1, [p.address for p in self.providers])
        self._send_all(self.admin, [f.createProgramme(params)])
        self.programme_id = int(f.programmeCount().call())
        holders = [e.address for e in self.enterprises]
        self._send_all(
            self.issuer,
            [f.issueBatch(self.programme_id, holders, [10**12] * len(holders), [b"\x00" * 32] * len(holders))],
        )

    def _nonce(self, account: LocalAccount) -> int:
        if account.address not in self._nonces:
            self._nonces[account.address] = self.w3.eth.get_transaction_count(account.address, "pending")
        self._nonces[account.address] += 1
        return self._nonces[account.address] - 1

    def _raw(self, account: LocalAccount, data: str, gas: int = 3_000_000) -> bytes:
        tx = {
            "to": self.contract.address,
            "data": data,
            "gas": gas,
            "gasPrice": 0,
            "nonce": self._nonce(account),
            "chainId": self.chain_id,
        }
        signed = account.sign_transaction(tx)
        self._last[account.address] = "0x" + bytes(signed.hash).hex()
        return bytes(signed.raw_transaction)

    def _send_all(self, account: LocalAccount, calls: list[Any]) -> None:
        raws = [self._raw(account, c._encode_transaction_data()) for c in calls]
        for i in range(0, len(raws), 20):
            self.rpc_batch([("eth_sendRawTransaction", ["0x" + r.hex()]) for r in raws[i : i + 20]])
        receipt = self.w3.eth.wait_for_transaction_receipt(self._last[account.address], timeout=120)
        assert receipt["status"] == 1

    def rpc_batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        answers = self.http.post(self.rpc_url, json=body).json()
        errors = [a["error"] for a in answers if "error" in a]
        assert not errors, errors[:3]
        return [a["result"] for a in answers]

    def ipc_batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """The same batch, straight to anvil's private socket (the owner's way around the gateway)."""
        local = self._ipc_local
        if not hasattr(local, "sock"):  # one connection per sending thread
            local.sock = socket.socket(socket.AF_UNIX)
            local.sock.connect(self.ipc_path)
            local.file = local.sock.makefile("rb")
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        local.sock.sendall(json.dumps(body).encode())
        answers = json.loads(local.file.readline())
        errors = [a["error"] for a in answers if "error" in a]
        assert not errors, errors[:3]
        return [a["result"] for a in answers]

    def _redemption(self, i: int) -> tuple[LocalAccount, Redemption, bytes]:
        provider, enterprise = self.providers[i % len(self.providers)], self.enterprises[i % len(self.enterprises)]
        r = Redemption(
            enterprise=enterprise.address,
            programme_id=self.programme_id,
            amount=100,
            invoice_amount=200,
            invoice_hash=os.urandom(32),
            category=0,
            nonce=next(self._consent_nonce),
            deadline=int(time.time()) + 3600 * 24 * 400,
        )
        sig = sign_consent(enterprise, r, provider.address, chain_id=self.chain_id, contract=self.contract.address)
        return provider, r, sig

    def presigned_redeems(self, count: int) -> list[bytes]:
        out = []
        for i in range(count):
            provider, r, sig = self._redemption(i)
            out.append(
                self._raw(
                    provider, self.contract.functions.redeem(r.as_struct(), sig)._encode_transaction_data(), gas=150_000
                )
            )
        return out

    def wait_all_mined(self) -> None:
        for tx_hash in self._last.values():
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=300, poll_latency=0.02)
            assert receipt["status"] == 1, receipt

    def redeem_with_web3(self) -> None:
        """What a user would write: build, sign, send, wait — one redemption at a time."""
        provider, r, sig = self._redemption(0)
        tx = self.contract.functions.redeem(r.as_struct(), sig).build_transaction(
            {
                "from": provider.address,
                "gasPrice": 0,
                "chainId": self.chain_id,
                "nonce": self.w3.eth.get_transaction_count(provider.address, "pending"),
            }
        )
        tx_hash = self.w3.eth.send_raw_transaction(provider.sign_transaction(tx).raw_transaction)
        assert self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)["status"] == 1


@dataclass
class RunningService:
    url: str
    process: subprocess.Popen[bytes]


def service_folder(devnet_dir: Path, target: Path) -> Path:
    """A service folder of its own on the devnet of `devnet_dir`: its admin key, node token and deployment."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("admin.key", "node-token", "deployment.json"):
        shutil.copy2(devnet_dir / name, target / name)
    return target


def fresh_postgres(admin_url: str) -> str:
    """A new, empty database on the PostgreSQL server at `admin_url`; its URL."""
    name = f"cvl_bench_{os.urandom(4).hex()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time so far of these processes and their children that were waited for."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def service_pids(service: RunningService) -> list[int]:
    """The service's process and its worker processes."""
    children = Path(f"/proc/{service.process.pid}/task/{service.process.pid}/children")
    extra = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [service.process.pid, *extra]


def start_service(data_dir: Path, *, workers: int, database_url: str | None = None) -> RunningService:
    port = devnet.free_port()
    env = {**os.environ, "VOUCHER_DATA_DIR": str(data_dir)}
    if database_url:
        env["DATABASE_URL"] = database_url
    log = open(data_dir / "service.log", "ab")  # noqa: SIM115 (the process writes to it until stopped)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "backend.api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
            "--timeout-keep-alive",
            "60",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                return RunningService(url, proc)
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the service did not start; see {data_dir / 'service.log'}")


def stop_service(service: RunningService) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()


class ApiWorld:
    """Providers, enterprises, a programme and funded wallets, all made through the API."""

    def __init__(self, url: str, data_dir: Path, *, providers: int, enterprises: int, redemptions: int) -> None:
        self.url = url
        self._invoice = itertools.count()
        admin = {"Authorization": "Bearer " + (data_dir / "admin-api-key").read_text().strip()}
        http = httpx.Client(base_url=url, timeout=120, headers=admin)

        def make(kind: str, i: int) -> dict[str, Any]:
            digits = "".join(str(b % 10) for b in os.urandom(15))
            body: dict[str, Any] = {"name": f"{kind} {i}", "credit_code": with_check("91" + digits)}
            if kind == "providers":
                body["categories"] = ["intelligent"]
            r = http.post(f"/v1/participants/{kind}", json=body)
            assert r.status_code == 201, r.text
            return dict(r.json())

        with ThreadPoolExecutor(8) as pool:
            self.providers = list(pool.map(lambda i: make("providers", i), range(providers)))
            self.enterprises = list(pool.map(lambda i: make("enterprises", i), range(enterprises)))
        now = http.get("/v1/health").json()["chain_time"]
        prog = http.post(
            "/v1/programmes",
            json={
                "name": "bench",
                "ratio_bps": 5000,
                "budget": 10**15,
                "cap_per_enterprise": 10**13,
                "valid_from": _iso(now - 10),
                "valid_until": _iso(now + 365 * 86400),
                "categories": ["intelligent"],
                "provider_ids": [p["id"] for p in self.providers],
            },
        )
        assert prog.status_code == 201, prog.text
        self.programme_id = prog.json()["id"]

        def key(role: str, pid: int | None) -> str:
            return "Bearer " + str(
                http.post("/v1/api-keys", json={"role": role, "participant_id": pid}).json()["secret"]
            )

        self.provider_keys = [key("provider", p["id"]) for p in self.providers]
        self.enterprise_keys = [key("enterprise", e["id"]) for e in self.enterprises]
        apps = []
        for e_key in self.enterprise_keys:
            r = http.post(
                "/v1/applications",
                headers={"Authorization": e_key},
                json={"programme_id": self.programme_id, "amount": 10**13, "purpose": "bench"},
            )
            apps.append(r.json()["id"])
        issuer = {"Authorization": key("issuer", None)}
        r = http.post("/v1/applications/approve-batch", headers=issuer, json={"application_ids": apps})
        assert r.status_code == 200, r.text
        http.close()

    def claim_request(self, i: int) -> tuple[dict[str, Any], Any, str]:
        e = i % len(self.enterprises)
        body = {
            "enterprise_id": self.enterprises[e]["id"],
            "programme_id": self.programme_id,
            "invoice_number": f"BENCH-{next(self._invoice)}-{os.urandom(4).hex()}",
            "invoice_amount": 200,
            "category": "intelligent",
        }
        headers = {"Authorization": self.provider_keys[i % len(self.providers)]}
        return (
            {"json": body, "headers": headers},
            (lambda rid: f"/v1/redemptions/{rid}/confirm"),
            self.enterprise_keys[e],
        )

    def check_chain(self, rpc_url: str) -> int:
        """VoucherRedeemed events of the API programme, counted on chain."""
        w3 = Web3(Web3.HTTPProvider(rpc_url))
        topic = Web3.keccak(text="VoucherRedeemed(uint256,address,address,uint256,uint256,bytes32,uint8,uint256)")
        logs = w3.eth.get_logs(
            {
                "fromBlock": 0,
                "toBlock": "latest",
                "topics": ["0x" + topic.hex().removeprefix("0x"), "0x" + self.programme_id.to_bytes(32, "big").hex()],
            }
        )
        return len(logs)


def _iso(ts: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat()
