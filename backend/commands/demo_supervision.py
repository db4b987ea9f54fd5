"""The demo's last step, as finance and a supervisor: each provider's redemptions settled in a batch whose
digest is anchored on chain, the books reconciled against the chain, and the two ledgers and the competition
report for the programme, each saying the block it was computed at."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.commands.demo_client import Client, DemoError
from backend.money import yuan

OPEN_PERIOD = {"period_from": "2000-01-01T00:00:00Z", "period_until": "2200-01-01T00:00:00Z"}


@dataclass
class Supervision:
    settlements: list[dict[str, Any]] = field(default_factory=list)  # approved batches
    reconciliation: dict[str, Any] = field(default_factory=dict)
    economic: dict[str, Any] = field(default_factory=dict)
    social: dict[str, Any] = field(default_factory=dict)
    competition: dict[str, Any] = field(default_factory=dict)


def supervise(
    api: Client, admin: str, *, programme_id: int, providers: list[tuple[str, int, str]], data_dir: Path,
    out: Callable[[str], None],
) -> Supervision:  # fmt: skip
    """`providers`: (name, participant id, its API key)."""
    result = Supervision()
    finance = _key(api, admin, "finance")
    supervisor = _key(api, admin, "supervisor")
    out("8. settlement (兑付): each provider batches its redemptions; finance approves and anchors the digest")
    for name, provider_id, key in providers:
        body = {"provider_id": provider_id, **OPEN_PERIOD}
        batch = api.post("/v1/settlements", key, body, what=f"{name}'s settlement batch", expect=(201,))
        approved = api.post(f"/v1/settlements/{batch['id']}/approve", finance, what="approving", expect=(200, 202))
        if approved["status"] == "approving":
            path = f"/v1/settlements/{batch['id']}"
            approved = api.settle(path, finance, busy="approving", what="the anchoring")
        if approved["status"] != "approved":
            raise DemoError(f"settlement {batch['id']} ended {approved['status']}, not approved")
        result.settlements.append(approved)
        lines = approved["line_count"]
        out(
            f"  ✓ {name}: {lines} redemption{'s' if lines != 1 else ''}, {yuan(approved['subsidy_total'])} — "
            f"digest {approved['digest'][:10]}… anchored on chain"
        )
    rec = api.get("/v1/audit/reconciliation", supervisor, what="reconciliation")
    result.reconciliation = rec
    if rec["differences"]:
        raise DemoError(f"reconciliation found {len(rec['differences'])} differences: {rec['differences'][:3]}")
    checked = ", ".join(f"{n} {what}" for what, n in rec["checked"].items())
    out(f"9. reconciled records, event mirror and chain at block {rec['block']} ({checked}): no difference")
    query = f"?programme_id={programme_id}"
    result.economic = eco = api.get("/v1/reports/economic" + query, supervisor, what="economic report")
    result.social = soc = api.get("/v1/reports/social" + query, supervisor, what="social report")
    result.competition = comp = api.get("/v1/reports/competition" + query, supervisor, what="competition report")
    t = eco["totals"]
    out(
        f"   economic ledger: subsidy {yuan(t['subsidy'])} leveraged {yuan(t['co_payment'])} of the enterprises' "
        f"own money on {yuan(t['invoice_total'])} of compute; reclaimed {yuan(t['reclaimed'])}"
    )
    s = soc["totals"]
    out(f"   social ledger: {s['enterprises_served']} enterprises served, {s['first_time_users']} for the first time")
    c = comp["totals"]
    shares = ", ".join(f"{p['name']} {float(p['share']):.0%}" for p in comp["providers"])
    flag = "flagged: " + "; ".join(f["reason"] for f in comp["flags"]) if c["flagged"] else "not flagged"
    out(f"   fair competition: {shares}; HHI {c['hhi']} ({flag})")
    out(f"   reports computed at block {eco['meta']['block']}; check the chain yourself with")
    out(f"   `voucher audit verify --deployment {data_dir / 'deployment.json'}`")
    return result


def _key(api: Client, admin: str, role: str) -> str:
    body = {"role": role, "participant_id": None, "label": f"demo {role}"}
    return str(api.post("/v1/api-keys", admin, body, what=f"creating the {role} key", expect=(201,))["secret"])
