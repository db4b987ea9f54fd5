"""`voucher audit verify` on real chains: a clean lifecycle passes with the right counts; each rule a faulty
contract breaks is named, with exit code 1; an unusable deployment file or node gives exit code 2."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_utils.address import to_checksum_address

from backend.audit import invariants, logdecode, verify
from backend.chain import devnet
from backend.chain.deploy import Deployment
from backend.chain.events import EventDecoder
from backend.chain.rpc import Rpc
from backend.commands import cli
from backend.paths import PROJECT_ROOT
from tests.audit.conftest import CleanChain, Faulty
from tests.support import ENTERPRISE

CHECK = re.compile(r"^([✓✗]) (\S+)", re.MULTILINE)


def _run(deployment_file: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = verify.main(deployment_file, *extra, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _checks(out: str) -> dict[str, str]:
    return {name: mark for mark, name in CHECK.findall(out)}


def test_a_clean_lifecycle_passes_through_the_cli_with_the_counts_it_made(
    clean_chain: CleanChain, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["audit", "verify", "--deployment", str(clean_chain.deployment_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert _checks(out) == dict.fromkeys(invariants.INVARIANTS, "✓")
    assert "VIOLATION" not in out and "OK: every invariant holds" in out
    printed = {m[1]: int(m[2]) for m in re.finditer(r"^  (\w+)\s+(\d+)$", out, re.MULTILINE)}
    assert printed == dict(clean_chain.events)
    assert f"events: {sum(clean_chain.events.values())}" in out
    assert f"holders: {clean_chain.holders}   programmes: {clean_chain.programmes}   invoices: 3   anchors: 2" in out
    assert re.search(r"verified \d+ events in [\d.]+ s \([\d,]+ events/s\)", out)


def test_the_recomputed_totals_and_state_are_read_at_the_last_scanned_block(clean_chain: CleanChain) -> None:
    report = verify.verify(clean_chain.deployment_file)
    assert report.violations == [] and report.chain.block == report.last
    assert {pid: tuple(t) for pid, t in report.recomputed.totals.items()} == clean_chain.totals
    for pid, (issued, redeemed, reclaimed, revoked) in clean_chain.totals.items():
        assert report.recomputed.supply[pid] == issued - redeemed - reclaimed - revoked
        assert report.chain.programmes[pid][2:6] == (issued, redeemed, reclaimed, revoked)
    # Later blocks change nothing already read: the audit describes the chain as of its last block.
    ledger = clean_chain.ledger
    ledger.new_participant(ENTERPRISE)
    assert verify.verify(clean_chain.deployment_file).last > report.last


def _decoded_both_ways(rpc_url: str, record: Any) -> list[tuple[tuple[str, dict[str, Any]], Any]]:
    rpc = Rpc(rpc_url)
    try:
        logs = rpc.call(
            "eth_getLogs", [{"address": record.address, "fromBlock": hex(record.deploy_block), "toBlock": "latest"}]
        )
    finally:
        rpc.close()
    reference = EventDecoder(record.abi)
    return [(fast, reference.decode(log)) for log in logs if (fast := logdecode.decode(log)) is not None]


def _plain(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else list(value) if isinstance(value, tuple | list) else value


def test_the_fast_decoder_agrees_with_the_abi_decoder(
    clean_chain: CleanChain, deploy_faulty: Callable[[], Faulty]
) -> None:
    faulty = deploy_faulty()
    faulty.do("createProgramme", 1000, 1000, 5000)
    faulty.do("createProgramme", 1000, 1000, 5000)
    enterprise = to_checksum_address(os.urandom(20))
    faulty.do("issueMany", enterprise, [1, 2], [7, 2**200])  # one TransferBatch, two VoucherIssued
    seen: set[str] = set()
    for file in (clean_chain.deployment_file, faulty.deployment_file):
        dep = Deployment.load(file)
        for (name, fast), ref in _decoded_both_ways(dep.rpc_url, dep.voucher):
            assert ref is not None and name == ref.name
            assert {k: _plain(v) for k, v in fast.items()} == {k: _plain(v) for k, v in ref.args.items()}
            seen.add(name)
    assert seen == set(logdecode.LAYOUTS)


def test_the_honest_functions_of_the_faulty_contract_pass(deploy_faulty: Callable[[], Faulty]) -> None:
    """The control for the tests below: only the break* functions (and broken rules) make violations."""
    faulty = deploy_faulty()
    a, b = A, B
    faulty.do("createProgramme", 1000, 600, 5000)
    faulty.do("createProgramme", 1000, 600, 5000)
    faulty.do("issue", 1, a, 500)
    faulty.do("issueMany", b, [1, 2], [100, 200])
    faulty.do("redeem", 1, a, 50, 100, b"\x01" * 32)
    faulty.do("revoke", 2, b, 20)
    faulty.do("anchor", b"\x02" * 32)
    code, out, _ = _run(faulty.deployment_file)
    assert code == 0, out
    assert "TransferBatch" in out and _checks(out) == dict.fromkeys(invariants.INVARIANTS, "✓")


A, B = to_checksum_address("0x" + "a1" * 20), to_checksum_address("0x" + "b2" * 20)
INVOICE = b"\x11" * 32
# name -> (steps after a programme (budget 1000, cap 600, 50%) was created, broken invariants, expected words)
BREAKS: dict[str, tuple[list[tuple[Any, ...]], set[str], list[str]]] = {
    "issuance beyond the budget": (
        [("issue", 1, A, 600), ("issue", 1, B, 500)],
        {"budget"},
        ["programme 1", "= 1100 exceeds budget 1000"],
    ),
    "issuance beyond an enterprise's cap": (
        [("issue", 1, A, 700)],
        {"enterprise-cap"},
        ["programme 1", f"enterprise {A}", "issued 700 exceeds cap 600"],
    ),
    "issuedTo that disagrees with the issuance events": (
        [("issue", 1, A, 100), ("breakIssuedTo", 1, A, 70)],
        {"enterprise-cap"},
        ["issued from events 100, issuedTo 70"],
    ),
    "a holder-to-holder transfer": (
        [("issue", 1, A, 100), ("breakTransfer", A, B, 1, 40)],
        {"no-transfers"},
        ["programme 1", "tx 0x", f"40 moved from {A} to {B}"],
    ),
    "an invoice hash redeemed twice": (
        [("issue", 1, A, 100), ("redeem", 1, A, 10, 100, INVOICE), ("redeem", 1, A, 10, 100, INVOICE)],
        {"invoice-single-use"},
        ["invoice 0x" + INVOICE.hex(), "redeemed in tx 0x", "and again in tx 0x"],
    ),
    "a redeemed invoice the contract forgot": (
        [("issue", 1, A, 100), ("redeem", 1, A, 10, 100, INVOICE), ("breakInvoice", INVOICE)],
        {"invoice-single-use"},
        ["isInvoiceRedeemed false"],
    ),
    "a redemption above the subsidy share": (
        [("issue", 1, A, 100), ("redeem", 1, A, 51, 100, INVOICE)],
        {"subsidy-ratio"},
        ["redeemed 51, at most 50 (5000 bps of invoice 100)"],
    ),
    "a redemption without its burn": (
        [("issue", 1, A, 100), ("breakRedeemWithoutBurn", 1, A, 30, INVOICE)],
        {"domain-events", "supply"},
        ["event for 30 without its burn", "transfer logs give 100, issued - redeemed - reclaimed - revoked = 70"],
    ),
    "a balance that disagrees with the logs": (
        [("issue", 1, A, 100), ("breakBalance", A, 1, 999)],
        {"balances", "supply"},
        [f"holder {A}", "logs give 100, balanceOf gives 999", "sum of balanceOf 999"],
    ),
    "a programme total no event reports": (
        [("issue", 1, A, 100), ("breakIssuedTotal", 1, 5)],
        {"programme-totals"},
        ["programme 1: issued from events 100, programme() 105"],
    ),
    "an anchor event without the anchor": (
        [("breakAnchor", b"\x22" * 32)],
        {"anchors"},
        ["digest 0x" + "22" * 32, "anchoredAt is 0"],
    ),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_each_broken_rule_is_named_with_exit_code_1(case: str, deploy_faulty: Callable[[], Faulty]) -> None:
    steps, broken, words = BREAKS[case]
    faulty = deploy_faulty()
    faulty.do("createProgramme", 1000, 600, 5000)
    for name, *args in steps:
        faulty.do(name, *args)
    code, out, _ = _run(faulty.deployment_file)
    assert code == 1, out
    named = {m for m in re.findall(r"^VIOLATION \[(\S+)\]", out, re.MULTILINE)}
    assert named == broken, out
    assert {k for k, mark in _checks(out).items() if mark == "✗"} == broken
    violations = "\n".join(line for line in out.splitlines() if line.startswith("VIOLATION"))
    for word in words:
        assert word in violations, f"{word!r} not in:\n{violations}"
    assert "FAILED" in out


def test_rpc_overrides_the_url_in_the_deployment_file(clean_chain: CleanChain, tmp_path: Path) -> None:
    raw = json.loads(clean_chain.deployment_file.read_text())
    real, raw["rpc_url"] = raw["rpc_url"], f"http://127.0.0.1:{devnet.free_port()}"  # nothing listens there
    moved = tmp_path / "deployment.json"
    moved.write_text(json.dumps(raw))
    code, out, err = _run(moved)
    assert code == 2 and out == ""
    assert err.startswith("error: the chain node at http://127.0.0.1:") and "did not answer" in err
    code, out, _ = _run(moved, real)
    assert code == 0 and "OK: every invariant holds" in out


def test_a_missing_deployment_file_gives_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "deployment.json"
    assert cli.main(["audit", "verify", "--deployment", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: deployment file {missing} does not exist\n" and captured.out == ""
    broken = tmp_path / "deployment.json"
    broken.write_text("{not json")
    assert cli.main(["audit", "verify", "--deployment", str(broken)]) == 2
    assert capsys.readouterr().err.startswith(f"error: deployment file {broken} is not a deployment record")
    broken.write_text(json.dumps({"chain_id": 1, "rpc_url": "http://127.0.0.1:1", "admin": "0x", "contracts": {}}))
    assert cli.main(["audit", "verify", "--deployment", str(broken)]) == 2
    assert capsys.readouterr().err == (
        f"error: deployment file {broken} is not a deployment record (KeyError: 'ComputeVoucher')\n"
    )


def test_an_unreachable_node_gives_exit_code_2_and_one_line_from_the_console_command(
    clean_chain: CleanChain,
) -> None:
    dead = f"http://127.0.0.1:{devnet.free_port()}"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("voucher")),
            "audit",
            "verify",
            "--deployment",
            str(clean_chain.deployment_file),
            "--rpc",
            dead,
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: the chain node at {dead} did not answer (ConnectionRefusedError); try again shortly"
    ]


def test_a_node_of_another_chain_or_without_the_contract_gives_exit_code_2(
    clean_chain: CleanChain, tmp_path: Path
) -> None:
    raw = json.loads(clean_chain.deployment_file.read_text())
    other = tmp_path / "other-chain.json"
    other.write_text(json.dumps({**raw, "chain_id": 1}))
    code, _, err = _run(other)
    assert code == 2 and f"is chain {raw['chain_id']}, but {other} is for 1" in err
    record = raw["contracts"]["ComputeVoucher"]
    gone = tmp_path / "no-code.json"
    empty = "0x" + "00" * 19 + "77"  # an address with no code
    gone.write_text(json.dumps({**raw, "contracts": {"ComputeVoucher": {**record, "address": empty}}}))
    code, _, err = _run(gone)
    assert code == 2 and "has no contract at 0x" in err


def test_progress_goes_to_stderr_a_line_per_tenth_of_a_long_range(clean_chain: CleanChain) -> None:
    progress = io.StringIO()
    report = verify.verify(clean_chain.deployment_file, progress=progress, progress_min_blocks=0)
    lines = progress.getvalue().splitlines()
    assert lines and lines[-1].startswith(f"scanned blocks {report.first}..{report.last} (100%)")
    assert len(lines) <= 10
    quiet = io.StringIO()
    verify.verify(clean_chain.deployment_file, progress=quiet)  # a short range on a pipe: no progress
    assert quiet.getvalue() == ""
