"""Reconciliation: the service's records and the event mirror, each compared with the chain's own state at one
block. Every holder x programme balance, every programme's totals and terms, every redemption the chain
burnt or the service says it did; each disagreement is listed with all three values."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select

from backend.audit import mirror
from backend.audit.trail import MOVES, holdings_by_account
from backend.models import (
    Adjustment,
    Application,
    ChainEvent,
    FormerAddress,
    Participant,
    Programme,
    Redemption,
    unix_time,
)
from backend.services.context import Context

TOTALS = ("issued", "redeemed", "reclaimed", "revoked")
IN_FLIGHT = ("submitting",)  # sent, outcome not yet recorded: the monitor completes these


@dataclass(frozen=True)
class Difference:
    kind: str  # balance | programme | redemption
    subject: dict[str, Any]
    service: Any
    mirror: Any
    chain: Any


@dataclass
class Reconciliation:
    block: int
    checked: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)


@dataclass
class Books:
    """What the service's own records say: per (enterprise, programme) balance, per programme totals."""

    balances: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    totals: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: dict.fromkeys(TOTALS, 0)))

    def move(self, enterprise_id: int, programme_id: int, total: str, amount: int) -> None:
        self.balances[(enterprise_id, programme_id)] += amount if total == "issued" else -amount
        self.totals[programme_id][total] += amount


def books(ctx: Context) -> Books:
    """Issued applications, confirmed redemptions, reclaims and revocations, read once."""
    out = Books()
    with ctx.read() as s:
        for a in s.exec(select(Application).where(Application.status == "issued")).all():
            out.move(a.enterprise_id, a.programme_id, "issued", a.approved_amount or 0)
        for r in s.exec(select(Redemption).where(Redemption.status == "confirmed")).all():
            out.move(r.enterprise_id, r.programme_id, "redeemed", r.amount)
        for adj in s.exec(select(Adjustment)).all():
            out.move(
                adj.enterprise_id, adj.programme_id, "reclaimed" if adj.kind == "reclaim" else "revoked", adj.amount
            )
    return out


def recorded_balances(ctx: Context) -> dict[tuple[int, int], int]:
    """(enterprise id, programme id) -> issued - confirmed redemptions - reclaimed - revoked, from the database."""
    return dict(books(ctx).balances)


def reconcile(ctx: Context) -> Reconciliation:
    block = mirror.sync(ctx)
    with ctx.read() as s:
        people = list(s.exec(select(Participant)).all())
        former = {f.address: f.participant_id for f in s.exec(select(FormerAddress)).all()}
        programmes = {p.id: p for p in s.exec(select(Programme)).all()}
        events = list(s.exec(select(ChainEvent).where(col(ChainEvent.block_number) <= block)).all())
        redemptions = list(s.exec(select(Redemption).order_by(col(Redemption.id))).all())
    out = Reconciliation(block=block)
    recorded = books(ctx)
    _balances(ctx, out, recorded, people, former, events)
    _programmes(ctx, out, recorded, programmes, events)
    _redemptions(ctx, out, redemptions, events)
    return out


def _balances(
    ctx: Context,
    out: Reconciliation,
    books: Books,
    people: list[Participant],
    former: dict[str, int],
    events: list[ChainEvent],
) -> None:
    """A key retired by a rotation belongs to its participant still, and must hold nothing."""
    by_id = {p.id: p.address for p in people}
    by_address: dict[str, int | None] = {**{p.address: p.id for p in people}, **former}
    recorded = {(by_id[e], p): v for (e, p), v in books.balances.items()}
    mirrored = {k: h.balance for k, h in holdings_by_account(events).items()}
    keys = sorted(set(recorded) | set(mirrored))
    onchain = ctx.chain.read_at(out.block, [("balanceOf", key) for key in keys])
    for (address, programme_id), chain in zip(keys, onchain, strict=True):
        known = address in by_address
        service = recorded.get((address, programme_id), 0 if known else None)
        mirror_value = mirrored.get((address, programme_id), 0)
        if not service == mirror_value == chain:
            subject = {"address": address, "enterprise_id": by_address.get(address), "programme_id": programme_id}
            out.differences.append(Difference("balance", subject, service, mirror_value, int(chain)))
    out.checked["balances"] = len(keys)


def _programmes(
    ctx: Context, out: Reconciliation, books: Books, rows: dict[int, Programme], events: list[ChainEvent]
) -> None:
    mirrored: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TOTALS, 0))
    created: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.name in MOVES and e.programme_id is not None:
            mirrored[e.programme_id][MOVES[e.name]] += int(e.arguments()["amount"])
        elif e.name == "ProgrammeCreated" and e.programme_id is not None:
            created[e.programme_id] = e.arguments()
    recorded = books.totals
    ids = sorted(set(rows) | set(created))
    states = ctx.chain.read_at(out.block, [("programme", (i,)) for i in ids])
    for programme_id, state in zip(ids, states, strict=True):
        chain = dict(zip(("budget", "cap_per_enterprise", *TOTALS, "ratio_bps", "valid_from", "valid_until",
                          "categories"), state, strict=True))  # fmt: skip
        row = rows.get(programme_id)
        terms = created.get(programme_id, {})
        service: dict[str, Any] = {**recorded.get(programme_id, dict.fromkeys(TOTALS, 0))}
        if row is not None:
            service |= {"budget": row.budget, "cap_per_enterprise": row.cap_per_enterprise, "ratio_bps": row.ratio_bps,
                        "valid_from": unix_time(row.valid_from), "valid_until": unix_time(row.valid_until),
                        "categories": row.categories}  # fmt: skip
        mirror_view: dict[str, Any] = {**mirrored[programme_id]}
        mirror_view |= {"budget": terms.get("budget"), "cap_per_enterprise": terms.get("capPerEnterprise"),
                        "ratio_bps": terms.get("ratioBps"), "valid_from": terms.get("validFrom"),
                        "valid_until": terms.get("validUntil"), "categories": terms.get("categories")}  # fmt: skip
        for name, chain_value in chain.items():
            s_value = service.get(name) if row is not None or name in TOTALS else None
            m_value = mirror_view.get(name)
            m_value = int(m_value) if m_value is not None else None
            if not s_value == m_value == int(chain_value):
                subject = {"programme_id": programme_id, "field": name}
                out.differences.append(Difference("programme", subject, s_value, m_value, int(chain_value)))
    out.checked["programmes"] = len(ids)


def _redemptions(ctx: Context, out: Reconciliation, rows: list[Redemption], events: list[ChainEvent]) -> None:
    burnt = {e.arguments()["invoiceHash"]: e for e in events if e.name == "VoucherRedeemed"}
    confirmed = {r.invoice_hash: r for r in rows if r.status == "confirmed"}
    latest = {r.invoice_hash: r for r in rows}  # ordered by id: the newest claim per invoice wins
    hashes = sorted(set(burnt) | set(confirmed))
    used = ctx.chain.read_at(out.block, [("isInvoiceRedeemed", (bytes.fromhex(h[2:]),)) for h in hashes])
    for invoice_hash, chain_used in zip(hashes, used, strict=True):
        record, event = confirmed.get(invoice_hash), burnt.get(invoice_hash)
        claim = record or latest.get(invoice_hash)
        if claim is not None and claim.status in IN_FLIGHT:
            continue
        agree = (
            record is not None
            and event is not None
            and bool(chain_used)
            and record.tx_hash == event.tx_hash
            and record.amount == int(event.arguments()["amount"])
        )
        if not agree:
            subject = {"invoice_hash": invoice_hash, "redemption_id": claim.id if claim else None}
            service = {"status": claim.status, "tx_hash": claim.tx_hash, "amount": claim.amount} if claim else None
            seen = {"tx_hash": event.tx_hash, "amount": int(event.arguments()["amount"])} if event else None
            out.differences.append(Difference("redemption", subject, service, seen, {"redeemed": bool(chain_used)}))
    out.checked["redemptions"] = len(hashes)
