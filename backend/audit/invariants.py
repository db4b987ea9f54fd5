"""What the audit believes from logs alone, and the invariants that belief must share with the chain's state.

`Recomputed` folds a contract's raw logs, in chain order, into balances, programme totals, per-enterprise
issued totals, invoices and anchors. `check` compares that with state read at the last scanned block. Both
are pure: all I/O lives in `backend.audit.verify`.
Logs are decoded by `backend.audit.logdecode`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from backend.audit.logdecode import decode
from backend.chain.hashing import checksum_address

ZERO = "0x" + "0" * 40
BPS = 10_000


@dataclass
class Recomputed:
    """Everything the logs say, folded in chain order. Keys use lower-case addresses."""

    events: Counter[str] = field(default_factory=Counter)
    balances: defaultdict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))  # (holder, id)
    supply: defaultdict[int, int] = field(default_factory=lambda: defaultdict(int))
    # programme -> [issued, redeemed, reclaimed, revoked]
    totals: defaultdict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))
    issued_to: defaultdict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))  # (id, enterprise)
    created: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # id -> budget, cap, ratioBps
    # Domain movements (+1) and mint/burn logs (-1) per (tx, "mint"|"burn", holder, id, amount): all cancel out.
    unmatched: Counter[tuple[str, str, str, int, int]] = field(default_factory=Counter)
    transfers: list[tuple[str, str, str, int, int]] = field(default_factory=list)  # holder to holder
    invoices: dict[str, str] = field(default_factory=dict)  # invoice hash -> first redemption's tx
    reused_invoices: list[tuple[str, str, str]] = field(default_factory=list)  # hash, first tx, later tx
    redemptions: list[tuple[int, str, int, int, str]] = field(default_factory=list)  # id, holder, amount, invoice, tx
    anchors: dict[str, str] = field(default_factory=dict)  # digest -> tx
    names: dict[str, str] = field(default_factory=dict)  # topic -> event name, for counting the other events

    def fold(self, logs: Iterable[dict[str, Any]]) -> None:
        for log in logs:
            decoded = decode(log)
            if decoded is None:
                topics = log["topics"]
                self.events[self.names.get(topics[0].lower(), "unknown") if topics else "anonymous"] += 1
                continue
            name, a = decoded
            self.events[name] += 1
            tx = log["transactionHash"]
            if name == "TransferSingle":
                self._move(tx, a["from"], a["to"], a["id"], a["value"])
            elif name == "TransferBatch":
                for pid, value in zip(a["ids"], a["values"], strict=True):
                    self._move(tx, a["from"], a["to"], pid, value)
            elif name == "VoucherIssued":
                pid, who, amount = a["programmeId"], a["enterprise"], a["amount"]
                self.totals[pid][0] += amount
                self.issued_to[pid, who] += amount
                self.unmatched[tx, "mint", who, pid, amount] += 1
            elif name == "VoucherRedeemed":
                pid, who, amount, invoice = a["programmeId"], a["enterprise"], a["amount"], a["invoiceHash"]
                self.totals[pid][1] += amount
                self.unmatched[tx, "burn", who, pid, amount] += 1
                if invoice in self.invoices:
                    self.reused_invoices.append((invoice, self.invoices[invoice], tx))
                else:
                    self.invoices[invoice] = tx
                self.redemptions.append((pid, who, amount, a["invoiceAmount"], tx))
            elif name in ("VoucherReclaimed", "VoucherRevoked"):
                pid, who, amount = a["programmeId"], a["holder"], a["amount"]
                self.totals[pid][2 if name == "VoucherReclaimed" else 3] += amount
                self.unmatched[tx, "burn", who, pid, amount] += 1
            elif name == "VoucherMigrated":
                pid, old, new, amount = a["programmeId"], a["from"], a["to"], a["amount"]
                # The cap follows the enterprise to its new key; programme totals do not change.
                self.issued_to[pid, new] += self.issued_to.pop((pid, old), 0)
                self.issued_to[pid, old] = 0
                self.unmatched[tx, "burn", old, pid, amount] += 1
                self.unmatched[tx, "mint", new, pid, amount] += 1
            elif name == "ProgrammeCreated":
                self.created[a["programmeId"]] = (a["budget"], a["capPerEnterprise"], a["ratioBps"])
            elif name == "HashAnchored":
                self.anchors.setdefault(a["digest"], tx)

    def _move(self, tx: str, sender: str, receiver: str, pid: int, value: int) -> None:
        if sender != ZERO:
            self.balances[sender, pid] -= value
            if receiver == ZERO:
                self.supply[pid] -= value
                self.unmatched[tx, "burn", sender, pid, value] -= 1
        if receiver != ZERO:
            self.balances[receiver, pid] += value
            if sender == ZERO:
                self.supply[pid] += value
                self.unmatched[tx, "mint", receiver, pid, value] -= 1
            else:
                self.transfers.append((tx, sender, receiver, pid, value))

    @property
    def holders(self) -> set[str]:
        return {holder for holder, _ in self.balances}

    @property
    def programme_ids(self) -> set[int]:
        return set(self.created) | set(self.totals) | set(self.supply)


@dataclass(frozen=True)
class ChainState:
    """What the contract holds at the audited block."""

    block: int
    programmes: dict[int, tuple[int, ...]]  # id -> the Programme struct's 10 words, in declaration order
    balances: dict[tuple[str, int], int]
    issued_to: dict[tuple[int, str], int]
    invoices: dict[str, bool]
    anchors: dict[str, int]
    total_supply: dict[int, int] | None  # None when the contract has no totalSupply(id)


@dataclass(frozen=True)
class Violation:
    invariant: str
    message: str


INVARIANTS = {
    "balances": "every balance rebuilt from transfer logs equals balanceOf",
    "domain-events": "every issuance, redemption, reclaim, revocation and migration has its own mint or burn",
    "programme-totals": "issued, redeemed, reclaimed and revoked from events equal programme(id)",
    "budget": "issued - reclaimed - revoked <= budget",
    "enterprise-cap": "each enterprise's issued total <= cap and equals issuedTo",
    "invoice-single-use": "no invoice subsidised twice, each recorded by isInvoiceRedeemed",
    "subsidy-ratio": "each redemption <= floor(invoice amount x ratio / 10000)",
    "no-transfers": "no movement between two holders",
    "supply": "supply from transfer logs = issued - redeemed - reclaimed - revoked = sum of balances",
    "anchors": "every anchored digest has anchoredAt != 0",
}
_TOTALS = ("issued", "redeemed", "reclaimed", "revoked")


def _addr(address: str) -> str:
    return checksum_address(address)


def _balances(r: Recomputed, chain: ChainState) -> Iterator[Violation]:
    for (holder, pid), value in sorted(r.balances.items()):
        if chain.balances.get((holder, pid)) != value:
            yield Violation(
                "balances",
                f"programme {pid}, holder {_addr(holder)}: logs give {value}, "
                f"balanceOf gives {chain.balances.get((holder, pid))}",
            )


def _domain_events(r: Recomputed) -> Iterator[Violation]:
    for (tx, kind, holder, pid, amount), n in sorted(r.unmatched.items()):
        where = f"programme {pid}, holder {_addr(holder)}, tx {tx}"
        if n > 0:
            yield Violation("domain-events", f"{where}: event for {amount} without its {kind} ({n} unmatched)")
        elif n < 0:
            yield Violation(
                "domain-events",
                f"{where}: {kind} of {amount} without an issuance, redemption, "
                f"reclaim, revocation or migration event ({-n} unmatched)",
            )


def _programmes(r: Recomputed, chain: ChainState) -> Iterator[Violation]:
    for pid in sorted(r.programme_ids | set(chain.programmes)):
        words, totals = chain.programmes[pid], r.totals.get(pid, [0, 0, 0, 0])
        for i, what in enumerate(_TOTALS):
            if totals[i] != words[2 + i]:
                yield Violation(
                    "programme-totals", f"programme {pid}: {what} from events {totals[i]}, programme() {words[2 + i]}"
                )
        terms = (words[0], words[1], words[6])
        if pid in r.created and r.created[pid] != terms:
            yield Violation(
                "programme-totals",
                f"programme {pid}: created with budget, cap, ratio {r.created[pid]}, programme() holds {terms}",
            )
        outstanding = totals[0] - totals[2] - totals[3]  # what reclaim and revocation gave back is budget again
        if outstanding > words[0]:
            yield Violation(
                "budget", f"programme {pid}: issued - reclaimed - revoked = {outstanding} exceeds budget {words[0]}"
            )


def _caps(r: Recomputed, chain: ChainState) -> Iterator[Violation]:
    for (pid, who), value in sorted(r.issued_to.items()):
        where, cap, on_chain = (
            f"programme {pid}, enterprise {_addr(who)}",
            chain.programmes[pid][1],
            chain.issued_to.get((pid, who)),
        )
        if value > cap:
            yield Violation("enterprise-cap", f"{where}: issued {value} exceeds cap {cap}")
        if on_chain != value:
            yield Violation("enterprise-cap", f"{where}: issued from events {value}, issuedTo {on_chain}")


def _invoices(r: Recomputed, chain: ChainState) -> Iterator[Violation]:
    for invoice, first, later in r.reused_invoices:
        yield Violation("invoice-single-use", f"invoice {invoice}: redeemed in tx {first} and again in tx {later}")
    for invoice, tx in r.invoices.items():
        if not chain.invoices.get(invoice):
            yield Violation(
                "invoice-single-use", f"invoice {invoice} (tx {tx}): redeemed in logs, isInvoiceRedeemed false"
            )
    for pid, who, amount, invoice_amount, tx in r.redemptions:
        ratio = chain.programmes[pid][6]
        most = invoice_amount * ratio // BPS
        if amount > most:
            yield Violation(
                "subsidy-ratio",
                f"programme {pid}, holder {_addr(who)}, tx {tx}: redeemed {amount}, "
                f"at most {most} ({ratio} bps of invoice {invoice_amount})",
            )


def _supply(r: Recomputed, chain: ChainState) -> Iterator[Violation]:
    held: Counter[int] = Counter()
    for (_, pid), value in chain.balances.items():
        held[pid] += value
    what = "sum of balanceOf" if chain.total_supply is None else "totalSupply"
    for pid in sorted(r.programme_ids):
        issued, redeemed, reclaimed, revoked = r.totals.get(pid, [0, 0, 0, 0])
        expected, logged = issued - redeemed - reclaimed - revoked, r.supply.get(pid, 0)
        on_chain = held[pid] if chain.total_supply is None else chain.total_supply.get(pid, 0)
        if not logged == expected == on_chain:
            yield Violation(
                "supply",
                f"programme {pid}: transfer logs give {logged}, issued - redeemed - "
                f"reclaimed - revoked = {expected}, {what} {on_chain}",
            )


def check(r: Recomputed, chain: ChainState) -> list[Violation]:
    """Every violation of the invariants above, in INVARIANTS order. `chain` holds every programme of `r`."""
    found = [
        *_balances(r, chain),
        *_domain_events(r),
        *_programmes(r, chain),
        *_caps(r, chain),
        *_invoices(r, chain),
        *(
            Violation(
                "no-transfers", f"programme {pid}, tx {tx}: {value} moved from {_addr(sender)} to {_addr(receiver)}"
            )
            for tx, sender, receiver, pid, value in r.transfers
        ),
        *_supply(r, chain),
        *(
            Violation("anchors", f"digest {digest} (tx {tx}): anchored in logs, anchoredAt is 0")
            for digest, tx in r.anchors.items()
            if not chain.anchors.get(digest)
        ),
    ]
    order = list(INVARIANTS)
    return sorted(found, key=lambda v: order.index(v.invariant))
