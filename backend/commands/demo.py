"""`voucher demo`: one compute-voucher programme from creation to reclaim and settlement, told through the
running service's HTTP API with amounts in yuan. Only the expiry step goes elsewhere: on a devnet the chain
clock is moved past the programme's end so that the issuer can reclaim; on any other node that step and the
reclaim are skipped."""

from __future__ import annotations

import io
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.commands.demo_client import Client, DemoError, devnet_time_travel
from backend.commands.demo_supervision import Supervision, supervise
from backend.credit_code import ALPHABET, with_check
from backend.money import yuan

DAY = 86400
REGION = "131000"  # 廊坊市 (Langfang)
RATIO_BPS, CAP, BUDGET = 5000, 1_000_000_00, 10_000_000_00
PROVIDERS = [  # registered name, short name, English name, compute categories offered
    ("廊坊云算科技有限公司", "廊坊云算", "Langfang Cloud Compute", ["intelligent", "general"]),
    ("京津智算科技有限公司", "京津智算", "Jingjin AI Compute", ["intelligent", "supercomputing"]),
]
ENTERPRISES = [  # registered name, short name, industry, size, amount applied for (fen), purpose
    ("廊坊智造科技有限公司", "廊坊智造科技", "smart manufacturing", "small", 1_000_000_00, "defect-detection models"),
    ("固安星图数据服务有限公司", "固安星图数据", "geospatial data", "micro", 300_000_00, "remote-sensing fine-tuning"),
    ("三河医联智能科技有限公司", "三河医联智能", "healthcare AI", "medium", 600_000_00, "medical-imaging inference"),
]
ACCEPTED = (200, 202)  # 202: the transaction was sent but is not mined yet


@dataclass
class Party:
    id: int
    name: str
    address: str
    key: str = field(default="", repr=False)  # its API key (a secret)
    issued: int = 0
    redeemed: int = 0
    reclaimed: int = 0
    balance: int = 0  # left in the wallet at the end


@dataclass
class DemoResult:
    programme_id: int
    budget: int
    issued: int
    redeemed: int
    reclaimed: int
    revoked: int
    outstanding: int
    remaining: int  # budget not spent (the API's `remaining`)
    time_travelled: bool
    refusals: dict[str, str]  # what was tried -> the error code the API gave
    enterprises: list[Party]
    supervision: Supervision


def _credit_code() -> str:
    # 9 (market regulation) 1 (company), the Langfang division code, a random organisation code; check digit last
    return with_check("91" + REGION + "MA0" + "".join(random.choices(ALPHABET, k=6)))


def _invoice() -> str:
    return "25" + "".join(random.choices("0123456789", k=18))  # a 20-digit fully digital e-invoice number


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _tx(tx_hash: str | None) -> str:
    return f"tx {tx_hash[:10]}…" if tx_hash else "no tx"


class Demo:
    def __init__(self, api: Client, admin: str, data_dir: Path, out: Callable[[str], None]) -> None:
        self.api, self.admin, self.data_dir, self.out = api, admin, data_dir, out
        self.issuer, self.pid, self.until = "", 0, 0
        self.providers: list[Party] = []
        self.enterprises: list[Party] = []
        self.refusals: dict[str, str] = {}

    def participants(self) -> None:
        self.out("1. participants, registered by the admin (each gets a managed chain account)")
        for name, short, english, cats in PROVIDERS:
            body = {"name": name, "credit_code": _credit_code(), "region_code": REGION, "categories": cats}
            p = self.api.post("/v1/participants/providers", self.admin, body, what=f"registering {name}", expect=(201,))
            self.providers.append(Party(p["id"], short, p["address"]))
            self.out(f"  ✓ provider #{p['id']} {name} ({english}), {p['credit_code']}, offers {' + '.join(cats)}")
        for name, short, industry, size, _, _ in ENTERPRISES:
            body = dict(name=name, credit_code=_credit_code(), region_code=REGION, industry=industry, size=size)
            e = self.api.post(
                "/v1/participants/enterprises", self.admin, body, what=f"registering {name}", expect=(201,)
            )
            self.enterprises.append(Party(e["id"], short, e["address"]))
            self.out(f"  ✓ enterprise #{e['id']} {name}, {e['credit_code']}, {industry}, {size}, region {REGION}")

    def programme(self, now: int) -> None:
        self.until = now + 365 * DAY
        body = {
            "name": f"廊坊市算力券 {datetime.fromtimestamp(now, UTC).year} · 智能算力",
            "ratio_bps": RATIO_BPS,
            "budget": BUDGET,
            "cap_per_enterprise": CAP,
            "valid_from": _iso(now - 60),
            "valid_until": _iso(self.until),
            "categories": ["intelligent"],
            "provider_ids": [p.id for p in self.providers],
        }
        prog = self.api.post("/v1/programmes", self.admin, body, what="creating the programme", expect=(201,))
        self.pid = prog["id"]
        self.out(
            f"2. programme #{self.pid} {prog['name']}: {RATIO_BPS / 100:g}% of each invoice, cap {yuan(CAP)} per "
            f"enterprise,\n   budget {yuan(BUDGET)}, intelligent compute only, ends {_iso(self.until)[:10]} "
            f"(chain time) — {_tx(prog['tx_hash'])}"
        )

    def keys(self) -> None:
        def new_key(role: str, participant_id: int | None, label: str) -> str:
            body = {"role": role, "participant_id": participant_id, "label": label}
            created = self.api.post("/v1/api-keys", self.admin, body, what=f"creating the {label} key", expect=(201,))
            return str(created["secret"])

        self.issuer = new_key("issuer", None, "demo issuer")
        for kind, parties in (("provider", self.providers), ("enterprise", self.enterprises)):
            for party in parties:
                party.key = new_key(kind, party.id, f"demo {party.name}")
        self.out(
            f"3. API keys created by the admin: 1 issuer, {len(self.enterprises)} enterprises, "
            f"{len(self.providers)} providers (kept in memory only)"
        )

    def _issued(self, application_id: int) -> dict[str, Any]:
        """The application once its issuance is mined; anything but `issued` stops the demo."""
        path = f"/v1/applications/{application_id}"
        app: dict[str, Any] = self.api.settle(path, self.issuer, busy="issuing", what=f"application {application_id}")
        if app["status"] != "issued":
            raise DemoError(f"application {application_id} ended {app['status']}, not issued")
        return app

    def issuance(self) -> None:
        apps = []
        for ent, (*_, asked, purpose) in zip(self.enterprises, ENTERPRISES, strict=True):
            body = {"programme_id": self.pid, "amount": asked, "purpose": purpose}
            apps.append(self.api.post("/v1/applications", ent.key, body, what=f"{ent.name} applying", expect=(201,)))
        asked_for = ", ".join(f"{e.name} {yuan(a['amount'])}" for e, a in zip(self.enterprises, apps, strict=True))
        self.out(f"4. applications: {asked_for}")
        # one approved for less than asked ...
        path = f"/v1/applications/{apps[0]['id']}/approve"
        self.api.post(path, self.issuer, {"amount": 800_000_00}, what="approving", expect=ACCEPTED)
        first, ent = self._issued(apps[0]["id"]), self.enterprises[0]
        self.out(
            f"  ✓ issued {yuan(first['approved_amount'])} to {ent.name} (asked {yuan(first['amount'])}) "
            f"— {_tx(first['tx_hash'])}"
        )
        # ... and the others in one batch: a single issuance transaction
        ids = [a["id"] for a in apps[1:]]
        body = {"application_ids": ids}
        self.api.post("/v1/applications/approve-batch", self.issuer, body, what="batch approval", expect=ACCEPTED)
        batch = [self._issued(i) for i in ids]
        granted = " and ".join(
            f"{yuan(a['approved_amount'])} to {e.name}" for e, a in zip(self.enterprises[1:], batch, strict=True)
        )
        self.out(f"  ✓ batch approval: issued {granted} — {_tx(batch[0]['tx_hash'])}")

    def _claim(self, prov: Party, ent: Party, invoice: str, invoice_amount: int, **extra: Any) -> dict[str, Any]:
        return {
            "enterprise_id": ent.id,
            "programme_id": self.pid,
            "invoice_number": invoice,
            "invoice_amount": invoice_amount,
            "category": "intelligent",
            **extra,
        }

    def _refused(self, label: str, prov: Party, body: dict[str, Any], what: str) -> dict[str, Any]:
        """A claim the service must refuse (409); its error code is kept for the result."""
        err = self.api.refused("/v1/redemptions", prov.key, body, what=what)
        self.refusals[label] = err["code"]
        return err

    def _redeem(self, prov: Party, ent: Party, invoice_amount: int) -> str:
        """The provider claims against a paid invoice; the enterprise confirms and its vouchers are burnt."""
        invoice, what = _invoice(), f"{prov.name} claiming from {ent.name}"
        body = self._claim(prov, ent, invoice, invoice_amount)
        claim = self.api.post("/v1/redemptions", prov.key, body, what=what, expect=(201,))
        path = f"/v1/redemptions/{claim['id']}"
        self.api.post(f"{path}/confirm", ent.key, what=f"{ent.name} confirming", expect=ACCEPTED)
        done = self.api.settle(path, ent.key, busy="submitting", what=what)
        if done["status"] != "confirmed":
            raise DemoError(f"{what}: ended {done['status']} ({done['error_code']}: {done['error_message']})")
        self.out(
            f"  ✓ {prov.name} redeemed {yuan(done['amount'])} from {ent.name} "
            f"(invoice {invoice}, {yuan(invoice_amount)}) — {_tx(done['tx_hash'])}"
        )
        return invoice

    def redemptions(self) -> None:
        self.out("5. redemptions: a provider claims against a paid invoice, the enterprise confirms (burnt on chain)")
        (lf, jj), (zz, xt, yl) = self.providers, self.enterprises
        self._redeem(lf, zz, 240_000_00)
        used = self._redeem(jj, xt, 180_000_00)
        again = self._claim(jj, xt, f"{used[:10]} {used[10:]}", 180_000_00)  # the same invoice, typed differently
        err = self._refused("reused invoice", jj, again, "claiming a used invoice again")
        self.out(f"  ✓ refused as expected, the same invoice again: {err['code']} — {err['message']}")
        greedy = self._claim(lf, yl, _invoice(), 100_000_00, amount=60_000_00)
        err = self._refused("over the ratio", lf, greedy, "claiming more than the ratio allows")
        self.out(f"  ✓ refused as expected, more than the ratio: {err['code']} — {err['message']}")
        self._redeem(lf, yl, 100_000_00)
        body = self._claim(jj, zz, _invoice(), 50_000_00)
        claim = self.api.post("/v1/redemptions", jj.key, body, what=f"{jj.name} claiming", expect=(201,))
        reason = "这笔算力不是我们订购的 (not ordered by us)"
        path = f"/v1/redemptions/{claim['id']}/refuse"
        refused = self.api.post(path, zz.key, {"reason": reason}, what=f"{zz.name} refusing")
        if refused["status"] != "refused":
            raise DemoError(f"claim {claim['id']} is {refused['status']} after the enterprise refused it")
        self.out(f"  ✓ {zz.name} refused {jj.name}'s claim of {yuan(claim['amount'])}: “{reason}” — nothing burnt")

    def expiry(self, contract: str) -> bool:
        """DEVNET ONLY: moves the chain clock a day past the programme's end. False if the node refuses."""
        self.out("6. expiry — DEVNET-ONLY time travel: the chain clock is moved past the programme's end")
        jump = self.until - int(self.api.get("/v1/health", self.admin, what="health check")["chain_time"]) + DAY
        why = devnet_time_travel(self.data_dir, contract, jump)
        if why is not None:
            self.out(f"  ! {why}; no time travel, so no reclaim")
            return False
        now = int(self.api.get("/v1/health", self.admin, what="health check")["chain_time"])
        if now < self.until:
            raise DemoError(f"the chain clock is at {_iso(now)}, still before the programme's end {_iso(self.until)}")
        self.out(f"  ⏩ evm_increaseTime {jump}s + evm_mine: chain time now {_iso(now)[:16]}, the programme is closed")
        lf, zz = self.providers[0], self.enterprises[0]
        err = self._refused("after expiry", lf, self._claim(lf, zz, _invoice(), 10_000_00), "claiming after expiry")
        self.out(f"  ✓ a claim after expiry is refused: {err['code']} — {err['message']}")
        return True

    def balance(self, ent: Party) -> int:
        rows = self.api.get(f"/v1/enterprises/{ent.id}/balances", self.admin, what=f"balance of {ent.name}")
        return sum(int(b["balance"]) for b in rows if b["programme_id"] == self.pid)

    def reclaim_and_figures(self, travelled: bool) -> dict[str, Any]:
        before = {e.id: self.balance(e) for e in self.enterprises}
        if travelled:
            rc = self.api.post(f"/v1/programmes/{self.pid}/reclaim", self.issuer, what="reclaiming")
            tx = _tx(next(iter(rc["tx_hashes"]), None))
            self.out(f"7. the issuer reclaimed {yuan(rc['amount'])} from {rc['holders']} wallets — {tx}")
        else:
            self.out("7. reclaim skipped: the programme is still open on this chain")
        fig: dict[str, Any] = self.api.get(f"/v1/programmes/{self.pid}", self.admin, what="programme figures")
        path = f"/v1/applications?programme_id={self.pid}&status=issued"
        for a in self.api.get(path, self.admin, what="issued applications"):
            next(e for e in self.enterprises if e.id == a["enterprise_id"]).issued += int(a["approved_amount"])
        for e in self.enterprises:
            mine = self.api.get("/v1/redemptions?status=confirmed", e.key, what=f"{e.name}'s redemptions")
            e.redeemed = sum(int(r["amount"]) for r in mine if r["programme_id"] == self.pid)
            e.balance = self.balance(e)
            e.reclaimed = before[e.id] - e.balance
        self.out(
            f"   programme #{self.pid}: issued {yuan(fig['issued'])}, redeemed {yuan(fig['redeemed'])}, "
            f"reclaimed {yuan(fig['reclaimed'])}, remaining {yuan(fig['remaining'])} of {yuan(fig['budget'])}"
        )
        for e in self.enterprises:
            self.out(
                f"   {e.name}: issued {yuan(e.issued)}, redeemed {yuan(e.redeemed)}, "
                f"reclaimed {yuan(e.reclaimed)}, left in wallet {yuan(e.balance)}"
            )
        # the books: every fen issued was redeemed, reclaimed, revoked or is still in a wallet
        in_wallets = sum(e.balance for e in self.enterprises)
        settled = fig["redeemed"] + fig["reclaimed"] + fig["revoked"]
        problems = []
        if fig["issued"] != settled + in_wallets or fig["outstanding"] != in_wallets:
            problems.append(f"issued {yuan(fig['issued'])} ≠ {yuan(settled)} settled + {yuan(in_wallets)} in wallets")
        for k in ("issued", "redeemed", "reclaimed"):
            if fig[k] != (by_enterprise := sum(getattr(e, k) for e in self.enterprises)):
                problems.append(f"{k}: {yuan(fig[k])} for the programme, {yuan(by_enterprise)} by enterprise")
        if problems:
            raise DemoError("the books do not balance: " + "; ".join(problems))
        self.out(f"  ✓ books balance: issued = redeemed + reclaimed + still in wallets ({yuan(in_wallets)})")
        return fig


def run(url: str, data_dir: Path, admin_key_file: Path | None = None, out: Callable[[str], None] = print) -> DemoResult:
    """The whole lifecycle against the service at `url`; DemoError says what went wrong, where."""
    key_file = admin_key_file or data_dir / "admin-api-key"
    try:
        admin = key_file.read_text().strip()
    except OSError:
        raise DemoError(f"no admin API key at {key_file}: `voucher serve` writes it on first start") from None
    api = Client(url)
    try:
        health = api.get("/v1/health", admin, what="health check")
        if health["paused"]:
            raise DemoError("the ledger is paused: an admin must unpause it (POST /v1/unpause) first")
        out(f"算力券 demo against {api.url} — chain {health['chain_id']}, contract {health['contract'][:10]}…")
        demo = Demo(api, admin, data_dir, out)
        demo.participants()
        demo.programme(int(health["chain_time"]))
        demo.keys()
        demo.issuance()
        demo.redemptions()
        travelled = demo.expiry(health["contract"])
        f = demo.reclaim_and_figures(travelled)
        providers = [(p.name, p.id, p.key) for p in demo.providers]
        supervised = supervise(api, admin, programme_id=demo.pid, providers=providers, data_dir=data_dir, out=out)
    finally:
        api.close()
    return DemoResult(
        demo.pid,
        f["budget"],
        f["issued"],
        f["redeemed"],
        f["reclaimed"],
        f["revoked"],
        f["outstanding"],
        f["remaining"],
        travelled,
        demo.refusals,
        demo.enterprises,
        supervised,
    )


def main(url: str, data_dir: Path, admin_key_file: Path | None = None) -> int:
    """`voucher demo`: 0 when the whole lifecycle went as expected, 1 with a one-line reason otherwise."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")  # ✓ and 中文 on a terminal that cannot show them
    try:
        run(url, data_dir, admin_key_file)
    except DemoError as exc:
        print(f"✗ demo stopped: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError) as exc:
        print(f"✗ demo stopped: unexpected answer from the service ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    return 0
