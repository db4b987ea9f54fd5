"""Stateful fuzzing of the deployed ComputeVoucher against a Python model of what it should hold.

Each rule acts on the chain and on the model, which predicts success or the exact custom error. After every step
the invariant re-reads everything from the chain (one JSON-RPC batch) and compares it with the model.
Chain time moves on a grid: programme windows open and close on whole ticks counted from the example's start and
travel lands half-way between ticks, so the seconds automine adds never cross a boundary.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from eth_abi.abi import decode, encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ABIFunction
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types, get_abi_output_types
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from web3 import HTTPProvider

from backend.chain.consent import Redemption
from tests.support import ENTERPRISE, PROVIDER, Ledger

TICK, BPS = 3600, 10_000
MAX_ACCOUNTS = {ENTERPRISE: 5, PROVIDER: 3}
MAX_PROGRAMMES = 10
MIN_STEPS = 2 / 3  # of the profile's examples × steps: runs that end early must not hollow the search out
IDX = st.integers(0, 63)  # an index into a model list, taken modulo its length
PCT = st.integers(1, 120)  # an amount as a percentage of a balance or cap (rounded down, so maybe 0), or > 100
REPLAY = st.sampled_from(["", "", "", "invoice", "nonce", "deadline"])  # what a redemption reuses, or lets expire
AIM = st.sampled_from([True, True, False])  # whether to pick an account holding vouchers
SOMETIMES = st.sampled_from([False, False, False, True])
PROGRAMME = st.tuples(  # budget, cap as % of budget, ratio, window start and length in ticks, categories, providers
    st.integers(1, 1000), st.integers(1, 100), st.integers(1, BPS), st.sampled_from([0, 0, -1, 1]), st.integers(1, 8),
    st.integers(1, 7), st.sets(IDX, min_size=1, max_size=3),
)  # fmt: skip
Error = tuple[str, dict[str, Any]] | None


def err(name: str, **args: Any) -> Error:
    return name, args


@dataclass
class Prog:
    budget: int
    cap: int
    ratio: int
    start: int  # validFrom and validUntil, in ticks from the example's start
    end: int
    categories: int
    providers: list[str]
    issued: int = 0
    redeemed: int = 0
    reclaimed: int = 0
    revoked: int = 0


class VoucherMachine(RuleBasedStateMachine):
    """The model: accounts (kind, frozen), programmes and their totals, balances and issuedTo per (programme,
    account), redeemed invoices and used nonces. Rules that `aim` pick an account holding vouchers."""

    def __init__(self, ledger: Ledger, stats: Counter[str]) -> None:
        super().__init__()
        self.ledger, self.c, self.stats = ledger, ledger.contract, stats
        self.snapshot = self._rpc("evm_snapshot")
        self._rpc("evm_mine")
        self.t0, self.pos, self.serial = ledger.now(), 0.0, itertools.count(1)  # pos: chain time in ticks since t0
        self.keys = itertools.count(1)
        strangers = [self._account(), self._account()]  # never registered
        self.accounts: dict[str, LocalAccount] = {a.address: a for a in strangers}
        self.kind: dict[str, int] = {a.address: 0 for a in strangers}
        for kind in (ENTERPRISE, ENTERPRISE, PROVIDER, PROVIDER):  # a head start; rules register more
            account = self._account()
            ledger.send(self.c.functions.registerParticipant(account.address, kind, b"\1" * 32), ledger.admin)
            self.accounts[account.address], self.kind[account.address] = account, kind
        self.frozen: set[str] = set()
        self.progs: list[Prog] = []  # this example's programmes: chain ids base + 1, base + 2, ...
        self.base = int(self.c.functions.programmeCount().call())  # other tests may have made some already
        self.bal: Counter[tuple[int, str]] = Counter()
        self.issued_to: Counter[tuple[int, str]] = Counter()
        self.invoices: set[bytes] = set()  # every invoice hash tried
        self.redeemed: set[bytes] = set()
        self.nonces: dict[str, set[int]] = {}
        # selector, input and output types, by name
        fns = [cast(ABIFunction, f) for f in self.c.abi if f.get("type") == "function"]
        self.sigs = {f["name"]: (function_abi_to_4byte_selector(f), get_abi_input_types(f), get_abi_output_types(f))
                     for f in fns}  # fmt: skip
        stats["examples"] += 1

    def teardown(self) -> None:
        assert self._rpc("evm_revert", self.snapshot) is True

    # -- helpers ------------------------------------------------------------------------------------------
    def _rpc(self, method: str, *params: Any) -> Any:
        return self.ledger.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]

    def _account(self) -> LocalAccount:
        """The example's next account, from a fixed key (every example reverts the chain, so keys may repeat):
        with a derandomized profile a run, the order the model sorts accounts in included, is the same every time."""
        account: LocalAccount = Account.from_key(self.ledger.w3.keccak(text=f"stateful account {next(self.keys)}"))
        return account

    def _ts(self, tick: float) -> int:
        return self.t0 + int(tick * TICK)

    def _of(self, kind: int) -> list[str]:
        return [a for a, k in self.kind.items() if k == kind]

    def _acct(self, i: int) -> str:
        """Mostly an enterprise; one pick in four any account (strangers and providers included)."""
        ents = self._of(ENTERPRISE)
        return ents[i % len(ents)] if i % 4 != 3 else list(self.accounts)[i % len(self.accounts)]

    def _prog(self, pid: int) -> Prog:
        return self.progs[pid - self.base - 1]

    def _pid(self, p: int) -> int:
        """Mostly a programme whose window is still open; one pick in four any."""
        pool = [pid for pid, prog in enumerate(self.progs, self.base + 1) if self.pos < prog.end]
        return pool[p % len(pool)] if pool and p % 4 != 3 else self.base + p % len(self.progs) + 1

    def _target(self, aim: bool, p: int, who: int) -> tuple[int, str]:
        """A programme and an account: when aiming, one holding vouchers of it (mostly of an open programme)."""
        held = sorted(k for k, b in self.bal.items() if b > 0)
        held = [k for k in held if self.pos < self._prog(k[0]).end] if p % 4 != 3 else held
        return held[(p * 64 + who) % len(held)] if aim and held else (self._pid(p), self._acct(who))

    def _expect(self, fn: Any, sender: LocalAccount, error: Error) -> None:
        """Sends `fn`: it must succeed if the model predicts no error, else revert with exactly that error."""
        if error is None:
            self.ledger.send(fn, sender)
        else:
            with self.ledger.reverts(error[0], **error[1]):
                self.ledger.send(fn, sender)
        self.stats[f"{fn.fn_name}:{error[0] if error else 'ok'}"] += 1

    def _inactive(self, addr: str) -> Error:
        """Why `addr` cannot receive vouchers or consent to a redemption, if it cannot."""
        if self.kind[addr] != ENTERPRISE:
            return err("ParticipantKindMismatch", account=addr, expected=ENTERPRISE, actual=self.kind[addr])
        return err("AccountIsFrozen", account=addr) if addr in self.frozen else None

    def _issue(self, fn: Any, pid: int, items: list[tuple[str, int]]) -> None:
        """Issues `items` in order: all of them, or none and the first item's error."""
        prog, got, error = self._prog(pid), Counter[str](), None
        if prog.end <= self.pos:
            error = err("ProgrammeExpired", programmeId=pid, validUntil=self._ts(prog.end))
        for addr, amount in items if error is None else []:
            available = prog.budget - (prog.issued + got.total() - prog.reclaimed - prog.revoked)
            cap_left = prog.cap - self.issued_to[pid, addr] - got[addr]
            if amount == 0:
                error = err("ZeroAmount")
            elif amount > available:
                error = err("ProgrammeBudgetExceeded", programmeId=pid, available=available, amount=amount)
            elif amount > cap_left:
                args = {"programmeId": pid, "enterprise": addr, "available": cap_left, "amount": amount}
                error = err("EnterpriseCapExceeded", **args)
            else:
                error = self._inactive(addr)
            if error:
                break
            got[addr] += amount
        self._expect(fn, self.ledger.issuer, error)
        if error is None:
            prog.issued += got.total()
            for addr, amount in got.items():
                self.issued_to[pid, addr] += amount
                self.bal[pid, addr] += amount

    # -- rules --------------------------------------------------------------------------------------------
    @precondition(lambda self: len(self.accounts) < 2 + sum(MAX_ACCOUNTS.values()))
    @rule(kind=st.sampled_from([ENTERPRISE, PROVIDER]), again=IDX)
    def register(self, kind: int, again: int) -> None:
        """Registers a new account, or sometimes (always once `kind` is full) a registered one again: refused."""
        if again % 5 == 4 or len(self._of(kind)) == MAX_ACCOUNTS[kind]:
            known = [a for a, k in self.kind.items() if k]
            addr = known[again % len(known)]
            error = err("ParticipantAlreadyRegistered", account=addr, kind=self.kind[addr])
            return self._expect(self.c.functions.registerParticipant(addr, kind, b"\1" * 32), self.ledger.admin, error)
        account = self._account()
        self._expect(self.c.functions.registerParticipant(account.address, kind, b"\1" * 32), self.ledger.admin, None)
        self.accounts[account.address], self.kind[account.address] = account, kind

    @initialize(params=st.lists(PROGRAMME, min_size=1, max_size=3), grants=st.lists(st.tuples(IDX, IDX, PCT)))
    def start(self, params: list[tuple[Any, ...]], grants: list[tuple[int, int, int]]) -> None:
        """A head start whatever rules the example enables: some programmes, some issuance."""
        for p in params:
            self.create_programme(p)
        for grant in grants:
            self.issue(*grant)

    @precondition(lambda self: len(self.progs) < MAX_PROGRAMMES)
    @rule(p=PROGRAMME)
    def create_programme(self, p: tuple[int, int, int, int, int, int, set[int]]) -> None:
        (budget, cap_pct, ratio, start, length, categories, provs), now = p, int(self.pos)
        everyone = self._of(PROVIDER)
        providers = sorted({everyone[i % len(everyone)] for i in provs})
        prog = Prog(budget, max(1, budget * cap_pct // 100), ratio, now + start, now + max(start, 0) + length,
                    categories, providers)  # fmt: skip
        pid = self.ledger.create_programme(providers, budget=budget, capPerEnterprise=prog.cap, ratioBps=ratio,
                                           validFrom=self._ts(prog.start), validUntil=self._ts(prog.end),
                                           categories=categories)  # fmt: skip
        self.progs.append(prog)
        assert pid == self.base + len(self.progs)
        self.stats["createProgramme:ok"] += 1

    @rule(p=IDX, who=IDX, pct=PCT)
    def issue(self, p: int, who: int, pct: int) -> None:
        pid, addr = (self._pid(p) if p < 60 else self.base + len(self.progs) + 1), self._acct(who)
        if pid > self.base + len(self.progs):  # no such programme
            fn = self.c.functions.issue(pid, addr, 1, b"\2" * 32)
            return self._expect(fn, self.ledger.issuer, err("ProgrammeNotFound", programmeId=pid))
        amount = self._prog(pid).cap * pct // 100
        self._issue(self.c.functions.issue(pid, addr, amount, b"\2" * 32), pid, [(addr, amount)])

    @rule(p=IDX, items=st.lists(st.tuples(IDX, PCT), min_size=1, max_size=4), short=SOMETIMES)
    def issue_batch(self, p: int, items: list[tuple[int, int]], short: bool) -> None:
        pid = self._pid(p)
        batch = [(self._acct(who), self._prog(pid).cap * pct // 100) for who, pct in items]
        refs = [bytes([i]) * 32 for i in range(len(batch) - short)]
        fn = self.c.functions.issueBatch(pid, [a for a, _ in batch], [n for _, n in batch], refs)
        if len(refs) < len(batch):
            error = err("BatchLengthMismatch", holders=len(batch), amounts=len(batch), refs=len(refs))
            return self._expect(fn, self.ledger.issuer, error)
        self._issue(fn, pid, batch)

    @rule(pick=st.tuples(IDX, IDX, IDX), pct=PCT, delta=st.integers(-2, 6), category=IDX, replay=REPLAY)
    def redeem(self, pick: tuple[int, int, int], pct: int, delta: int, category: int, replay: str) -> None:
        """Redeems a holding through one of its programme's providers, in an allowed category."""
        self._redeem(True, pick, pct, delta, category, replay)

    @rule(pick=st.tuples(IDX, IDX, IDX), pct=PCT, delta=st.integers(-2, 6), category=st.integers(0, 3), replay=REPLAY)
    def redeem_any(self, pick: tuple[int, int, int], pct: int, delta: int, category: int, replay: str) -> None:
        """Redeems from anyone through any provider in any category (3 is never allowed)."""
        self._redeem(False, pick, pct, delta, category, replay)

    def _redeem(self, aim: bool, pick: tuple[int, int, int], pct: int, delta: int, category: int, replay: str) -> None:
        (p, _, prov), (pid, ent) = pick, self._target(aim, pick[0], pick[1])
        prog, balance, used = self._prog(pid), self.bal[pid, ent], self.nonces.setdefault(ent, set())
        providers = prog.providers if aim and prog.providers else self._of(PROVIDER)
        provider = providers[prov % len(providers)]
        allowed = [b for b in range(3) if prog.categories >> b & 1]
        category = allowed[category % len(allowed)] if aim else category
        amount = max(balance, 1) * pct // 100
        invoice_amount = max(0, -(-amount * BPS // prog.ratio) + delta)  # the least invoice covering amount, + delta
        max_subsidy = invoice_amount * prog.ratio // BPS
        nonce = sorted(used)[p % len(used)] if replay == "nonce" and used else next(self.serial) * 257
        invoice = (sorted(self.redeemed)[p % len(self.redeemed)] if replay == "invoice" and self.redeemed
                   else self.ledger.w3.keccak(text=f"invoice {next(self.serial)}"))  # fmt: skip
        deadline = self._ts(self.pos + (-0.25 if replay == "deadline" else 0.25))
        inactive = self._inactive(ent)
        checks: list[tuple[Any, Error]] = [  # in the contract's order
            (provider in self.frozen, err("AccountIsFrozen", account=provider)),
            (provider not in prog.providers, err("ProviderNotInProgramme", programmeId=pid, provider=provider)),
            (self.pos < prog.start, err("ProgrammeNotStarted", programmeId=pid, validFrom=self._ts(prog.start))),
            (prog.end <= self.pos, err("ProgrammeExpired", programmeId=pid, validUntil=self._ts(prog.end))),
            (not prog.categories >> category & 1, err("CategoryNotAllowed", programmeId=pid, category=category)),
            (replay == "deadline", err("ConsentExpired", deadline=deadline)),
            (inactive, inactive),
            (amount == 0, err("ZeroAmount")),
            (amount > max_subsidy, err("RedemptionExceedsSubsidy", amount=amount, maxSubsidy=max_subsidy)),
            (invoice in self.redeemed, err("InvoiceAlreadyRedeemed", invoiceHash="0x" + invoice.hex())),
            (nonce in used, err("ConsentNonceUsed", enterprise=ent, nonce=nonce)),
            (amount > balance, err("ERC1155InsufficientBalance", sender=ent, balance=balance, needed=amount,
                                   tokenId=pid)),
        ]  # fmt: skip
        error = next((e for failed, e in checks if failed), None)
        r = Redemption(ent, pid, amount, invoice_amount, invoice, category, nonce, deadline)
        signature = self.ledger.sign(self.accounts[ent], r, provider)
        self._expect(self.c.functions.redeem(r.as_struct(), signature), self.accounts[provider], error)
        self.invoices.add(invoice)
        if error is None:
            prog.redeemed += amount
            self.bal[pid, ent] -= amount
            self.redeemed.add(invoice)
            used.add(nonce)

    @rule(when=st.sampled_from(["next", "closed", "early"]), p=IDX, holders=st.lists(IDX, max_size=4),
          sweep=st.booleans())  # fmt: skip
    def reclaim(self, when: str, p: int, holders: list[int], sweep: bool) -> None:
        """Reclaims from some accounts (or all, `sweep`) in a closed programme, in the next one to close after
        travelling past its end, or in an open one (`early`: refused)."""
        numbered = list(enumerate(self.progs, self.base + 1))
        closed = [pid for pid, prog in numbered if prog.end <= self.pos]
        still_open = sorted((prog.end, pid) for pid, prog in numbered if self.pos < prog.end)
        if (when == "closed" and closed) or not still_open:
            pid = closed[p % len(closed)]
        elif when == "early":
            pid = still_open[p % len(still_open)][1]
        else:
            pid = still_open[0][1]
            self._travel(self._prog(pid).end + 0.5)
        everyone = list(self.accounts)
        addrs, prog = [everyone[i % len(everyone)] for i in holders] + everyone * sweep, self._prog(pid)
        active = self.pos < prog.end
        error = err("ProgrammeStillActive", programmeId=pid, validUntil=self._ts(prog.end)) if active else None
        self._expect(self.c.functions.reclaim(pid, addrs), self.ledger.issuer, error)
        for addr in addrs if error is None else []:  # duplicates hold nothing the second time
            prog.reclaimed += self.bal.pop((pid, addr), 0)

    @rule(aim=AIM, p=IDX, who=IDX, pct=PCT)
    def revoke(self, aim: bool, p: int, who: int, pct: int) -> None:
        pid, addr = self._target(aim, p, who)
        balance = self.bal[pid, addr]
        amount = max(balance, 1) * pct // 100
        error = err("ZeroAmount") if amount == 0 else None
        if amount > balance:
            error = err("ERC1155InsufficientBalance", sender=addr, balance=balance, needed=amount, tokenId=pid)
        self._expect(self.c.functions.revoke(pid, addr, amount, 7), self.ledger.supervisor, error)
        if error is None:
            self._prog(pid).revoked += amount
            self.bal[pid, addr] -= amount

    @rule(who=IDX, freeze=st.sampled_from([False, False, True]), noop=SOMETIMES)
    def freeze(self, who: int, freeze: bool, noop: bool) -> None:
        """Freezes an unfrozen account or unfreezes a frozen one; sometimes tries the no-op, which is refused."""
        same = [a for a in self.accounts if (a in self.frozen) == freeze]  # the call would change nothing
        changing = [a for a in self.accounts if a not in same]
        unchanged = bool(same) and (noop or not changing)
        pool = same if unchanged else changing
        addr = pool[who % len(pool)]
        fn = self.c.functions.freeze(addr, 3) if freeze else self.c.functions.unfreeze(addr)
        error = err("AccountFrozenStateUnchanged", account=addr, frozen=freeze) if unchanged else None
        self._expect(fn, self.ledger.supervisor, error)
        if not unchanged:
            self.frozen ^= {addr}

    @rule(aim=AIM, p=IDX, who=IDX, to=IDX, pct=PCT, batch=st.booleans())
    def transfer(self, aim: bool, p: int, who: int, to: int, pct: int, batch: bool) -> None:
        """A holder moving its own vouchers to anyone (itself included): refused, nothing moves."""
        (pid, holder), receiver = self._target(aim, p, who), list(self.accounts)[to % len(self.accounts)]
        amount = max(self.bal[pid, holder], 1) * pct // 100
        fn = (self.c.functions.safeBatchTransferFrom(holder, receiver, [pid], [amount], b"") if batch
              else self.c.functions.safeTransferFrom(holder, receiver, pid, amount, b""))  # fmt: skip
        self._expect(fn, self.accounts[holder], err("VoucherNonTransferable", **{"from": holder, "to": receiver}))

    @rule(ticks=st.integers(1, 2))
    def travel(self, ticks: int) -> None:
        self._travel(int(self.pos) + ticks + 0.5)

    def _travel(self, pos: float) -> None:
        self.pos = pos
        self.ledger.travel_to(self._ts(pos))

    # -- invariants ---------------------------------------------------------------------------------------
    def _read(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Many view calls in one JSON-RPC batch, decoded."""
        requests = [("eth_call", [{"to": self.c.address, "data": "0x" + (self.sigs[name][0] + encode(
            self.sigs[name][1], args)).hex()}, "latest"]) for name, args in calls]  # fmt: skip
        responses = cast(HTTPProvider, self.ledger.w3.provider).make_batch_request(requests)  # type: ignore[arg-type]
        assert isinstance(responses, list) and all("result" in r for r in responses), responses
        return [decode(self.sigs[name][2], bytes.fromhex(r["result"][2:]))
                for (name, _), r in zip(calls, responses, strict=True)]  # fmt: skip

    @invariant()
    def chain_matches_model(self) -> None:
        self.stats["checks"] += 1  # once per example before its first step, then after every step
        pids = range(self.base + 1, self.base + len(self.progs) + 1)
        addrs, invoices = list(self.accounts), sorted(self.invoices)
        pairs = [(pid, a) for pid in pids for a in addrs]
        calls: list[tuple[str, list[Any]]] = [("programmeCount", []), *[("programme", [pid]) for pid in pids]]
        calls.append(("balanceOfBatch", [[a for _, a in pairs], [pid for pid, _ in pairs]]))
        calls += [("issuedTo", [pid, a]) for pid, a in pairs] + [("isInvoiceRedeemed", [h]) for h in invoices]
        calls += [("participant", [a]) for a in addrs]
        out = iter(self._read(calls))
        assert next(out)[0] == self.base + len(self.progs)
        chain = {pid: next(out)[0] for pid in pids}
        balances = dict(zip(pairs, next(out)[0], strict=True))
        issued_to = {pair: next(out)[0] for pair in pairs}
        for pid, prog in enumerate(self.progs, self.base + 1):
            budget, cap, issued, redeemed, reclaimed, revoked, *_ = chain[pid]
            assert chain[pid] == (prog.budget, prog.cap, prog.issued, prog.redeemed, prog.reclaimed, prog.revoked,
                                  prog.ratio, self._ts(prog.start), self._ts(prog.end), prog.categories)  # fmt: skip
            assert sum(balances[pid, a] for a in addrs) == issued - redeemed - reclaimed - revoked
            assert issued - reclaimed - revoked <= budget
            for a in addrs:
                assert balances[pid, a] == self.bal[pid, a], f"balance of {a} in programme {pid}"
                assert issued_to[pid, a] == self.issued_to[pid, a] <= cap, f"issuedTo {a} in programme {pid}"
        assert {h for h in invoices if next(out)[0]} == self.redeemed  # each hash redeemed at most once
        assert [tuple(next(out)) for _ in addrs] == [(self.kind[a], a in self.frozen) for a in addrs]


def test_voucher_state_machine(session_ledger: Ledger) -> None:
    # How many examples and steps, and whether derandomized: the Hypothesis profile (tests/conftest.py).
    run = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    stats: Counter[str] = Counter()
    # Hypothesis takes any factory of machines (its stub says a class): this one shares the ledger and the stats.
    run_state_machine_as_test(lambda: VoucherMachine(session_ledger, stats), settings=run)  # type: ignore[arg-type]
    print(sorted(stats.items()))  # what the run exercised, with -s
    assert stats["checks"] - stats["examples"] >= MIN_STEPS * run.max_examples * run.stateful_step_count, stats
