"""A whole programme over HTTP; afterwards the database and the chain agree on every balance and total."""

from __future__ import annotations

from typing import Any

import pytest

from backend.audit.reconcile import reconcile, recorded_balances
from tests.api.support import Api, Service, _iso, invoice_number

pytestmark = pytest.mark.both_databases


@pytest.fixture(scope="module")
def service(own_contract_service: Service) -> Service:
    return own_contract_service  # reconciliation covers the whole chain: this module's alone


def test_full_lifecycle_leaves_database_and_chain_in_agreement(api: Api) -> None:
    providers = [api.provider(), api.provider(categories=["intelligent", "general"])]
    enterprises = [api.enterprise() for _ in range(3)]
    now = api.chain_time()
    programme = api.programme(
        [p["id"] for p in providers],
        budget=5_000_000_00,
        cap_per_enterprise=1_000_000_00,
        valid_until=_iso(now + 30 * 86400),
    )
    pid = programme["id"]
    as_e = [api.as_(api.key_for("enterprise", e["id"])) for e in enterprises]
    as_p = [api.as_(api.key_for("provider", p["id"])) for p in providers]
    issuer, supervisor = api.issuer(), api.as_(api.key_for("supervisor"))

    apps = [
        api.ok(c.post("/v1/applications", {"programme_id": pid, "amount": 800_000_00, "purpose": "training"}), 201)
        for c in as_e
    ]
    api.ok(issuer.post(f"/v1/applications/{apps[0]['id']}/approve", {"amount": 600_000_00}))
    batch = api.ok(issuer.post("/v1/applications/approve-batch", {"application_ids": [apps[1]["id"], apps[2]["id"]]}))
    assert len({a["tx_hash"] for a in batch}) == 1

    def redeem(i: int, p: int, invoice: int, confirm: bool = True) -> dict[str, Any]:
        body = {
            "enterprise_id": enterprises[i]["id"],
            "programme_id": pid,
            "invoice_number": invoice_number(),
            "invoice_amount": invoice,
            "category": "intelligent",
        }
        claim = api.ok(as_p[p].post("/v1/redemptions", body), 201)
        action = "confirm" if confirm else "refuse"
        done: dict[str, Any] = api.ok(as_e[i].post(f"/v1/redemptions/{claim['id']}/{action}",
                                                   None if confirm else {"reason": "no"}))  # fmt: skip
        return done

    assert redeem(0, 0, 200_000_00)["status"] == "confirmed"  # ¥100,000 subsidy
    assert redeem(1, 1, 300_000_01)["amount"] == 150_000_00  # rounds down to the fen
    assert redeem(2, 0, 100_000_00, confirm=False)["status"] == "refused"
    api.ok(
        supervisor.post(
            "/v1/revocations",
            {"programme_id": pid, "enterprise_id": enterprises[2]["id"], "amount": 50_000_00, "reason_code": 7},
        )
    )
    assert reconcile(api.service.ctx).differences == []

    api.service.ctx.chain.rpc.call("evm_increaseTime", [31 * 86400])
    api.service.ctx.chain.rpc.call("evm_mine", [])
    reclaimed = api.ok(issuer.post(f"/v1/programmes/{pid}/reclaim"))
    assert reclaimed["amount"] == (600_000_00 - 100_000_00) + (800_000_00 - 150_000_00) + (800_000_00 - 50_000_00)

    assert reconcile(api.service.ctx).differences == []
    assert all(v == 0 for (e, p), v in recorded_balances(api.service.ctx).items() if p == pid)
    final = api.ok(api.get(f"/v1/programmes/{pid}"))
    state = api.service.ctx.chain.programme(pid)
    assert (
        (final["issued"], final["redeemed"], final["reclaimed"], final["revoked"])
        == (state.issued, state.redeemed, state.reclaimed, state.revoked)
        == (2_200_000_00, 250_000_00, reclaimed["amount"], 50_000_00)
    )
    assert final["outstanding"] == 0 and final["remaining"] == 5_000_000_00 - 250_000_00
