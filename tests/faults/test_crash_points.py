"""SIGKILL at every step of the redemption and issuance flows. After a restart, a retry with the same
Idempotency-Key finishes the flow exactly once (one transaction, one event) and is then replayed as is;
database, event mirror and chain agree."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from eth_utils.crypto import keccak
from sqlmodel import Session, func, select

from backend.models import Application, ChainTx, Participant, Redemption
from backend.services.context import Context
from backend.services.wiring import build_context
from tests.api.support import Api, Service, claim_body, credit_code
from tests.factory import ServiceFactory, service_settings
from tests.polling import eventually
from tests.service_process import ServiceProcess

Y = 100  # fen per yuan
PIPELINE = ("pipeline.stored", "pipeline.broadcast", "pipeline.receipt")
CONFIRM = ("confirm.signed", *(f"{x}:redeem" for x in PIPELINE), "confirm.recorded", "idempotency.before_done")
APPROVE = ("approve.issuing", *(f"{x}:issue" for x in PIPELINE), "approve.recorded", "idempotency.before_done")
CASES = [
    *(("register", f"{p}:register") for p in PIPELINE),
    ("register", "idempotency.before_done"),
    *(("claim", p) for p in ("claim.stored", "idempotency.before_done")),
    *(("apply", p) for p in ("apply.stored", "idempotency.before_done")),
    *(("confirm", p) for p in CONFIRM),
    *((flow, p) for flow in ("approve", "approve_batch") for p in APPROVE),
]


@dataclass
class World:
    proc: ServiceProcess
    ctx: Context
    api: Api
    provider: dict[str, Any]
    enterprise: dict[str, Any]
    programme_id: int
    claims: list[dict[str, Any]]  # pending claims, one per confirm case
    applications: list[dict[str, Any]]  # pending applications, one per approval case (two per batch case)

    def client(self, role: str, participant: dict[str, Any] | None = None) -> Api:
        return self.api.as_(self.api.key_for(role, participant["id"] if participant else None))

    def count(self, model: Any, *where: Any) -> int:
        with Session(self.ctx.engine) as s:
            return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


@pytest.fixture(scope="module")
def world(services: ServiceFactory) -> Iterator[World]:
    data_dir = services.folder("crash", own_contract=True)
    settings = service_settings(data_dir)
    # The default lease (60 s): a retry must take over because the killed process is gone, not because time passed.
    proc = ServiceProcess(data_dir, settings.db_url, VOUCHER_RECEIPT_WAIT_S="10")
    proc.start()
    ctx = build_context(settings)
    try:
        admin_key = (data_dir / "admin-api-key").read_text().strip()
        service = Service(url=proc.url, data_dir=data_dir, ctx=ctx, admin_key=admin_key)
        with Api(service) as api:
            provider, enterprise = api.provider(), api.enterprise()
            pid = api.programme([provider["id"]])["id"]
            api.fund(enterprise, pid, 100_000 * Y)
            w = World(proc, ctx, api, provider, enterprise, pid, [], [])
            as_p, as_e = w.client("provider", provider), w.client("enterprise", enterprise)
            for _ in range(sum(1 for flow, _ in CASES if flow == "confirm")):
                w.claims.append(api.ok(as_p.post("/v1/redemptions", claim_body(enterprise["id"], pid, 2_000 * Y)), 201))
            for _ in range(sum(1 if flow == "approve" else 2 for flow, _ in CASES if flow.startswith("approve"))):
                body = {"programme_id": pid, "amount": 1_000 * Y, "purpose": "inference"}
                w.applications.append(api.ok(as_e.post("/v1/applications", body), 201))
            proc.stop()
            yield w
    finally:
        proc.stop()
        ctx.close()


def _request(w: World, flow: str, n: int) -> tuple[Api, str, dict[str, Any] | None, Callable[[Any], None]]:
    """(client, path, body, check) for the n-th case of `flow`; `check` asserts exactly-once afterwards."""
    if flow == "register":
        code = credit_code()

        def one_registration(result: Any) -> None:
            assert result["credit_code"] == code
            assert w.count(Participant, Participant.credit_code == code) == 1
            assert w.count(ChainTx, ChainTx.kind == "register", ChainTx.ref == str(result["id"])) == 1
            _settled_tx(w, "register", str(result["id"]))
            assert w.ctx.chain.call("participant", result["address"]) == (1, False)  # an enterprise, on chain

        body: dict[str, Any] = {"name": f"Enterprise {code[-6:]}", "credit_code": code, "region_code": "131000"}
        return w.api, "/v1/participants/enterprises", body, one_registration
    if flow == "claim":
        body = claim_body(w.enterprise["id"], w.programme_id, 1_000 * Y)
        number = body["invoice_number"]

        def one_claim(result: Any) -> None:
            assert result["status"] == "pending" and result["invoice_number"] == number
            assert w.count(Redemption, Redemption.invoice_hash == result["invoice_hash"]) == 1

        return w.client("provider", w.provider), "/v1/redemptions", body, one_claim
    if flow == "apply":
        purpose = f"training run {uuid.uuid4().hex[:8]}"

        def one_application(result: Any) -> None:
            assert result["status"] == "pending"
            assert w.count(Application, Application.purpose == purpose) == 1

        body = {"programme_id": w.programme_id, "amount": 500 * Y, "purpose": purpose}
        return w.client("enterprise", w.enterprise), "/v1/applications", body, one_application
    if flow == "confirm":
        claim = w.claims[n]

        def one_burn(result: Any) -> None:
            final = _settled(w, f"/v1/redemptions/{claim['id']}", "confirmed")
            assert final["amount"] == 1_000 * Y
            assert w.count(ChainTx, ChainTx.kind == "redeem", ChainTx.ref == str(claim["id"])) == 1
            burns = w.api.ok(w.api.get("/v1/audit/events", event="VoucherRedeemed", limit=1000))["events"]
            assert [e["tx_hash"] for e in burns if e["args"]["invoiceHash"] == claim["invoice_hash"]] == [
                final["tx_hash"]
            ]

        return w.client("enterprise", w.enterprise), f"/v1/redemptions/{claim['id']}/confirm", None, one_burn
    batch = flow == "approve_batch"
    first = sum(1 if f == "approve" else 0 for f, _ in CASES) + 2 * n if batch else n
    apps = w.applications[first : first + (2 if batch else 1)]
    ids = [a["id"] for a in apps]

    def one_issuance(result: Any) -> None:
        for a in apps:
            assert _settled(w, f"/v1/applications/{a['id']}", "issued")["approved_amount"] == 1_000 * Y
        assert w.count(ChainTx, ChainTx.kind == "issue", ChainTx.ref == ",".join(map(str, ids))) == 1
        issued = w.api.ok(w.api.get("/v1/audit/events", event="VoucherIssued", limit=1000))["events"]
        refs = [e["args"]["applicationRef"] for e in issued]
        for i in ids:
            assert refs.count("0x" + keccak(text=f"application:{i}").hex()) == 1

    issuer = w.client("issuer")
    if batch:
        return issuer, "/v1/applications/approve-batch", {"application_ids": ids}, one_issuance
    return issuer, f"/v1/applications/{ids[0]}/approve", {}, one_issuance


def _settled_tx(w: World, kind: str, ref: str) -> None:
    def mined() -> bool:
        with Session(w.ctx.engine) as s:
            return s.exec(select(ChainTx.status).where(ChainTx.kind == kind, ChainTx.ref == ref)).one() == "confirmed"

    eventually(mined, interval=0.2, message=f"the {kind} transaction for {ref} was not mined")


def _settled(w: World, path: str, status: str) -> dict[str, Any]:
    def row() -> dict[str, Any]:
        found: dict[str, Any] = w.api.ok(w.api.get(path))
        assert found["status"] == status, found
        return found

    return eventually(row, interval=0.2)


@pytest.mark.parametrize(("flow", "point"), CASES, ids=[f"{f}-{p}" for f, p in CASES])
def test_a_kill_at_each_step_finishes_exactly_once(world: World, flow: str, point: str) -> None:
    n = sum(1 for f, p in CASES[: CASES.index((flow, point))] if f == flow)
    key = str(uuid.uuid4())
    world.proc.start(crash_at=point)
    try:
        client, path, body, check = _request(world, flow, n)
        with pytest.raises(httpx.TransportError):  # the connection dies with the process
            client.http.post(path, json=body, headers={**client._headers(key)})
        assert world.proc.killed(), f"the service did not reach {point}"
        world.proc.start()
        retry = client.http.post(path, json=body, headers={**client._headers(key)})
        assert retry.status_code in (200, 201, 202), retry.text
        check(retry.json())
        again = client.http.post(path, json=body, headers={**client._headers(key)})
        assert (again.status_code, again.json()) == (retry.status_code, retry.json())
        assert again.headers.get("Idempotent-Replayed") == "true"
        report = world.api.ok(world.api.get("/v1/audit/reconciliation"))
        assert report["differences"] == []
    finally:
        world.proc.stop()
