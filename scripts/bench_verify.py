"""How fast `voucher audit verify` checks a long ledger: builds a chain of at least N contract events on a devnet
of its own (a block every 0.25 s), then runs the verification several times and reports the median.

The chain: enterprises and providers registered, one programme, issuance in batches of a few hundred holders
(most of the events), some redemptions with real EIP-712 consent, and some anchored digests.

Usage: .venv/bin/python scripts/bench_verify.py [--events 100000] [--runs 5] [--enterprises 1000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.audit import verify
from backend.chain import devnet
from backend.chain.consent import Redemption, sign_consent
from backend.chain.deploy import DEPLOYMENT_FILE, admin_account, ensure_deployed
from backend.chain.rpc import Rpc

ISSUER_ROLE = Web3.keccak(text="ISSUER_ROLE")
FINANCE_ROLE = Web3.keccak(text="FINANCE_ROLE")
ISSUE_BATCH = 250  # holders per issueBatch transaction
ISSUE_GAS_EACH = 60_000


class Builder:
    """Signs transactions locally with its own nonces and sends them in JSON-RPC batches of 20."""

    def __init__(self, data_dir: Path, rpc_url: str) -> None:
        dep = ensure_deployed(data_dir, rpc_url)
        self.rpc = Rpc(rpc_url, timeout=120, token=devnet.token(data_dir))
        self.chain_id = dep.chain_id
        self.address = Web3.to_checksum_address(dep.voucher.address)
        self.fn = Web3().eth.contract(address=self.address, abi=dep.voucher.abi).functions
        self.admin = admin_account(data_dir)
        self._nonces: dict[str, int] = {}
        self._last: dict[str, str] = {}

    def send(self, account: LocalAccount, calls: list[Any], gas: int = 3_000_000) -> None:
        if account.address not in self._nonces:  # a key of the benchmark's own: onto the node's allowlist first
            self.rpc.call("perm_addAccountsToAllowlist", [[account.address]])
        raws = []
        for call in calls:
            if account.address not in self._nonces:
                self._nonces[account.address] = self.rpc.pending_nonce(account.address)
            nonce = self._nonces[account.address]
            self._nonces[account.address] = nonce + 1
            tx = {
                "to": self.address,
                "data": call._encode_transaction_data(),
                "gas": gas,
                "gasPrice": 0,
                "nonce": nonce,
                "chainId": self.chain_id,
            }
            signed = account.sign_transaction(tx)
            self._last[account.address] = "0x" + bytes(signed.hash).hex()
            raws.append("0x" + bytes(signed.raw_transaction).hex())
        for i in range(0, len(raws), 20):
            self.rpc.batch([("eth_sendRawTransaction", [raw]) for raw in raws[i : i + 20]])

    def wait(self) -> None:
        """Each sender's last transaction mined and successful (so, nonce by nonce, all before it too)."""
        for tx_hash in self._last.values():
            deadline = time.monotonic() + 600
            while (receipt := self.rpc.receipt(tx_hash)) is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"transaction {tx_hash} was not mined within 10 minutes")
                time.sleep(0.1)
            if int(receipt["status"], 16) != 1:
                raise SystemExit(f"transaction {tx_hash} failed on chain")


def build_chain(b: Builder, *, events: int, enterprises: int, providers: int) -> dict[str, int]:
    issuer, finance = Account.create(), Account.create()
    firms = [Account.create() for _ in range(enterprises)]
    sellers = [Account.create() for _ in range(providers)]
    f = b.fn
    b.send(b.admin, [f.grantRole(ISSUER_ROLE, issuer.address), f.grantRole(FINANCE_ROLE, finance.address)])
    b.send(b.admin, [f.registerParticipant(a.address, 2, os.urandom(32)) for a in sellers])
    b.send(b.admin, [f.registerParticipant(a.address, 1, os.urandom(32)) for a in firms])
    b.wait()
    now = int(b.rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
    params = (2**120, 2**100, 5000, now - 10, now + 365 * 86400, 1, [s.address for s in sellers])
    b.send(b.admin, [f.createProgramme(params)])
    b.wait()
    setup = 2 + providers + enterprises + 1 + providers  # roles, registrations, programme, its providers
    redemptions = min(2_000, events // 50)
    anchors = min(100, events // 1_000)
    issues = max(enterprises, -(-(events - setup - 2 * redemptions - anchors) // 2))  # each: mint + VoucherIssued
    holders = itertools.cycle(firms)
    calls = []
    for start in range(0, issues, ISSUE_BATCH):
        batch = [next(holders).address for _ in range(min(ISSUE_BATCH, issues - start))]
        calls.append(f.issueBatch(1, batch, [10**6] * len(batch), [os.urandom(32)] * len(batch)))
    b.send(issuer, calls, gas=ISSUE_GAS_EACH * ISSUE_BATCH + 100_000)
    b.wait()  # redemptions need the balances
    deadline = now + 30 * 86400
    redeems = []
    for i in range(redemptions):
        firm, seller = firms[i % enterprises], sellers[i % providers]
        r = Redemption(firm.address, 1, 100, 200, os.urandom(32), 0, i, deadline)
        signature = sign_consent(firm, r, seller.address, chain_id=b.chain_id, contract=b.address)
        redeems.append((seller, f.redeem(r.as_struct(), signature)))
    for seller in sellers:
        b.send(seller, [call for who, call in redeems if who is seller], gas=200_000)
    b.send(finance, [f.anchor(os.urandom(32), b"settlement".ljust(32, b"\0")) for _ in range(anchors)], gas=100_000)
    b.wait()
    return {"issuances": issues, "redemptions": redemptions, "anchors": anchors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="contract events to build, at least")
    parser.add_argument("--runs", type=int, default=5, help="verifications to time")
    parser.add_argument("--enterprises", type=int, default=1_000)
    parser.add_argument("--providers", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        data_dir = Path(tmp)
        info = devnet.up(data_dir, port=0, block_time=devnet.DEFAULT_BLOCK_TIME)
        try:
            t0 = time.perf_counter()
            built = build_chain(
                Builder(data_dir, info.rpc_url),
                events=args.events,
                enterprises=args.enterprises,
                providers=args.providers,
            )
            build_s = time.perf_counter() - t0
            times, report = [], None
            for _ in range(args.runs):
                report = verify.verify(data_dir / DEPLOYMENT_FILE)
                times.append(report.seconds)
        finally:
            devnet.down(data_dir)
    assert report is not None
    median = statistics.median(times)
    figures = {
        **built,
        "events": report.event_count,
        "blocks": report.last - report.first + 1,
        "holders": len(report.recomputed.holders),
        "violations": len(report.violations),
        "build_s": round(build_s, 1),
        "runs_s": [round(t, 2) for t in times],
        "median_s": round(median, 2),
        "events_per_s": round(report.event_count / median),
    }
    print("\n".join(verify.summary(report)))
    print(
        f"chain built in {figures['build_s']} s: {built['issuances']} issuances, {built['redemptions']} "
        f"redemptions, {built['anchors']} anchors over {figures['blocks']} blocks"
    )
    print(f"verify, {args.runs} runs: {figures['runs_s']} s")
    print(f"median {figures['median_s']} s for {figures['events']} events: {figures['events_per_s']:,} events/s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0 if not report.violations else 1


if __name__ == "__main__":
    sys.exit(main())
