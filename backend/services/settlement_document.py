"""The settlement batch's document of record: its canonical JSON (the bytes whose keccak256 is anchored on
chain) and the CSV rendering of the same lines and totals."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime
from typing import Any

from backend.chain.hashing import keccak
from backend.models import Participant, Redemption, SettlementBatch
from backend.money import yuan
from backend.services.participants import category_names

DOCUMENT_TYPE = "compute-voucher-settlement"
# The CSV's columns: the JSON lines' keys, the enterprise's flattened; amounts in fen.
CSV_COLUMNS = (
    "redemption_id", "enterprise_id", "enterprise_name", "enterprise_credit_code", "programme_id", "invoice_number",
    "invoice_hash", "invoice_amount", "category", "subsidy_amount", "redemption_tx_hash", "redemption_block",
)  # fmt: skip


def canonical_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(document: bytes) -> str:
    return "0x" + keccak(document).hex()


def line(r: Redemption, enterprise: Participant) -> dict[str, Any]:
    return {
        "redemption_id": r.id,
        "enterprise": {"id": enterprise.id, "name": enterprise.name, "credit_code": enterprise.credit_code},
        "programme_id": r.programme_id,
        "invoice_number": r.invoice_number,
        "invoice_hash": r.invoice_hash,
        "invoice_amount": r.invoice_amount,
        "category": category_names(1 << r.category)[0],
        "subsidy_amount": r.amount,
        "redemption_tx_hash": r.tx_hash,
        "redemption_block": r.block_number,
    }


def document(
    *, chain_id: int, contract: str, batch: SettlementBatch, provider: Participant, lines: list[dict[str, Any]]
) -> dict[str, Any]:
    period_from, period_until = iso(seconds(batch.period_from)), iso(seconds(batch.period_until))
    return {
        "type": DOCUMENT_TYPE,
        "version": 1,
        "ledger": {"chain_id": chain_id, "contract": contract},
        "settlement_id": batch.id,
        "provider": {k: getattr(provider, k) for k in ("id", "name", "credit_code", "address")},
        "period": {"from": period_from, "until": period_until, "basis": "block_time"},
        "submitted_at": iso(int(batch.created_at.timestamp())),
        "unit": "fen",
        "lines": lines,
        "totals": {k: getattr(batch, k) for k in ("line_count", "subsidy_total", "invoice_total")},
    }


def lines(batch: SettlementBatch) -> list[dict[str, Any]]:
    return list(json.loads(batch.document)["lines"])


def export_csv(batch: SettlementBatch) -> str:
    """The document's lines, then a blank row, then its totals and digest as name,value rows. Starts with a
    byte-order mark (spreadsheets then read the Chinese names as UTF-8). A text cell that a spreadsheet would
    run as a formula (starting = + - @) is prefixed with an apostrophe."""
    document = json.loads(batch.document)
    out = io.StringIO()
    out.write("\ufeff")
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for line in document["lines"]:
        flat = line | {f"enterprise_{k}": v for k, v in line["enterprise"].items()}
        w.writerow(_cell(flat[column]) for column in CSV_COLUMNS)
    totals, period, provider = document["totals"], document["period"], document["provider"]
    w.writerow([])
    summary = (
        ("settlement_id", document["settlement_id"]), ("provider_id", provider["id"]),
        ("provider_name", provider["name"]), ("period_from", period["from"]), ("period_until", period["until"]),
        ("line_count", totals["line_count"]), ("invoice_total", totals["invoice_total"]),
        ("subsidy_total", totals["subsidy_total"]), ("subsidy_total_yuan", yuan(totals["subsidy_total"])),
        ("digest", batch.digest),
    )  # fmt: skip
    for name, value in summary:
        w.writerow([name, _cell(value)])
    return out.getvalue()


def _cell(value: object) -> object:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def seconds(dt: datetime) -> int:
    """Whole seconds since the epoch, rounded up (block times are whole seconds); a naive datetime is UTC."""
    return math.ceil((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
