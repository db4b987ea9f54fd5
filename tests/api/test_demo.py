"""`voucher demo` against the test service: coded refusals, balanced books, printed figures equal to the chain's.
The first test moves the session devnet's clock more than a year forward (later programmes use chain time)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from backend.chain import devnet
from backend.commands import cli, demo
from backend.models import IdempotencyRecord
from backend.money import yuan
from tests.api.support import Service

# 5 participants, programme, 3 applications, 2 approvals, 7 claims, 3 confirms, refuse, reclaim, 2 settlements
# submitted and approved
LEDGER_POSTS = 27


@pytest.fixture(scope="module")
def service(own_contract_service: Service) -> Service:
    return own_contract_service  # the supervision step reconciles the whole chain: this module's alone


def _idempotency_records(service: Service) -> int:
    with Session(service.ctx.engine) as s:
        return int(s.exec(select(func.count()).select_from(IdempotencyRecord)).one())


def test_demo_runs_the_whole_lifecycle(service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    records = _idempotency_records(service)
    result = demo.run(service.url, service.data_dir)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) < 60

    assert result.time_travelled
    assert result.refusals == {
        "reused invoice": "invoice_already_redeemed",
        "over the ratio": "exceeds_subsidy_ratio",
        "after expiry": "programme_expired",
    }
    reused = next(line for line in lines if "invoice_already_redeemed" in line)
    assert "already subsidised" in reused
    over = next(line for line in lines if "exceeds_subsidy_ratio" in line)
    assert "¥60,000.00 exceeds the subsidy share ¥50,000.00" in over
    assert "✓ issued ¥800,000.00 to 廊坊智造科技 (asked ¥1,000,000.00)" in out
    assert "refused 京津智算's claim of ¥25,000.00" in out
    assert "DEVNET-ONLY time travel" in out

    # what the chain says is what the demo printed and returned
    chain, pid = service.ctx.chain, result.programme_id
    state = chain.programme(pid)
    assert (state.issued, state.redeemed, state.reclaimed, state.revoked) == (1_700_000_00, 260_000_00, 1_440_000_00, 0)
    assert (result.issued, result.redeemed, result.reclaimed, result.remaining, result.outstanding) == (
        state.issued,
        state.redeemed,
        state.reclaimed,
        state.available,
        state.outstanding,
    )
    assert (
        f"programme #{pid}: issued {yuan(state.issued)}, redeemed {yuan(state.redeemed)}, reclaimed "
        f"{yuan(state.reclaimed)}, remaining {yuan(state.available)} of {yuan(state.budget)}"
    ) in out

    # every fen issued was redeemed or reclaimed; nothing is left in the wallets
    wallets = sum(chain.balance(e.address, pid) for e in result.enterprises)
    assert state.reclaimed + state.redeemed + wallets == state.issued and wallets == 0 == state.outstanding
    assert [(e.name, e.issued, e.redeemed, e.reclaimed, e.balance) for e in result.enterprises] == [
        ("廊坊智造科技", 800_000_00, 120_000_00, 680_000_00, 0),
        ("固安星图数据", 300_000_00, 90_000_00, 210_000_00, 0),
        ("三河医联智能", 600_000_00, 50_000_00, 550_000_00, 0),
    ]
    for e in result.enterprises:
        assert f"{e.name}: issued {yuan(e.issued)}, redeemed {yuan(e.redeemed)}, reclaimed {yuan(e.reclaimed)}" in out
    assert _idempotency_records(service) - records == LEDGER_POSTS  # every ledger-changing POST carried a key

    # supervision: settled and anchored, reconciled, the reports show the demo's figures, the chain verifies
    sup = result.supervision
    assert [(b["line_count"], b["subsidy_total"], b["status"]) for b in sup.settlements] == [
        (2, 170_000_00, "approved"),
        (1, 90_000_00, "approved"),
    ]
    for batch in sup.settlements:
        assert chain.call("anchoredAt", bytes.fromhex(batch["digest"][2:])) > 0
    assert sup.reconciliation["differences"] == []
    assert "no difference" in out
    economic = sup.economic["totals"]
    assert (economic["subsidy"], economic["invoice_total"], economic["co_payment"]) == (
        260_000_00,
        520_000_00,
        260_000_00,
    )
    assert (economic["issued"], economic["reclaimed"], economic["redemptions"]) == (1_700_000_00, 1_440_000_00, 3)
    assert (sup.social["totals"]["enterprises_served"], sup.social["totals"]["first_time_users"]) == (3, 3)
    shares = {p["name"]: p["redeemed"] for p in sup.competition["providers"]}
    assert shares == {"廊坊云算科技有限公司": 170_000_00, "京津智算科技有限公司": 90_000_00}
    # (170/260)^2 + (90/260)^2, in percent squared: 3,700,000 / 676 = 5473.37...
    assert sup.competition["totals"]["hhi"] == "5473.37" and sup.competition["totals"]["flagged"] is True
    assert "HHI 5473.37" in out
    assert cli.main(["audit", "verify", "--deployment", str(service.data_dir / "deployment.json")]) == 0
    assert "OK: every invariant holds" in capsys.readouterr().out


def test_the_command_runs_again_on_the_same_service(service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    # fresh credit codes and invoice numbers each time, so a second run is not refused as a duplicate
    assert cli.main(["demo", "--url", service.url, "--data-dir", str(service.data_dir)]) == 0
    captured = capsys.readouterr()
    assert "✓ books balance" in captured.out and captured.err == ""


class _NotADevnet(BaseHTTPRequestHandler):
    """Answers every JSON-RPC call as Besu does for a method it does not have."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps(
            {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "Method not found"}}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_a_devnet() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotADevnet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_node_that_refuses_time_travel_skips_the_reclaim(
    service: Service, not_a_devnet: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = json.loads((service.data_dir / "deployment.json").read_text())
    (tmp_path / "deployment.json").write_text(json.dumps({**record, "rpc_url": not_a_devnet}))
    result = demo.run(service.url, tmp_path, admin_key_file=service.data_dir / "admin-api-key")
    out = capsys.readouterr().out
    assert "refused evm_increaseTime (Method not found): not a devnet" in out and "reclaim skipped" in out
    assert not result.time_travelled and "after expiry" not in result.refusals
    state = service.ctx.chain.programme(result.programme_id)
    assert (state.reclaimed, state.outstanding) == (0, 1_440_000_00) == (result.reclaimed, result.outstanding)
    wallets = sum(service.ctx.chain.balance(e.address, result.programme_id) for e in result.enterprises)
    assert state.redeemed + wallets == state.issued


def test_an_unreachable_service_is_a_message_not_a_traceback(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{devnet.free_port()}"
    assert cli.main(["demo", "--url", url, "--data-dir", str(service.data_dir)]) == 1
    err = capsys.readouterr().err
    assert f"the service at {url} is not reachable; start it with `voucher serve`" in err
    assert "Traceback" not in err


def test_a_missing_admin_key_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--data-dir", str(tmp_path)]) == 1
    assert f"no admin API key at {tmp_path / 'admin-api-key'}" in capsys.readouterr().err
