"""The service's view of the ComputeVoucher contract: encode calls, read state, send through the pipeline,
and turn the contract's custom errors into domain errors (one table)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.abi import function_signature_to_4byte_selector
from web3 import Web3

from backend import errors as e
from backend.chain.abi import canonical_type
from backend.chain.deploy import Deployment
from backend.chain.errors import DecodedError, ErrorDecoder
from backend.chain.events import DecodedEvent, EventDecoder
from backend.chain.pipeline import TxOutcome, TxPipeline
from backend.chain.rpc import Rpc, RpcError
from backend.money import yuan

ENTERPRISE, PROVIDER = 1, 2
ROLES = {
    "issuer": Web3.keccak(text="ISSUER_ROLE"),
    "finance": Web3.keccak(text="FINANCE_ROLE"),
    "supervisor": Web3.keccak(text="SUPERVISOR_ROLE"),
}


def _m(template: str) -> Any:
    def build(a: dict[str, Any]) -> str:
        money = {k: yuan(v) for k, v in a.items() if isinstance(v, int) and k in {"available", "amount", "maxSubsidy"}}
        return template.format(**{**a, **money})

    return build


# Contract error -> (domain error, message). The service checks most of these before sending;
# this table is what a caller sees when the chain is the one that refuses.
CONTRACT_ERRORS: dict[str, tuple[type[e.LedgerError], Any]] = {
    "ProgrammeBudgetExceeded": (e.BudgetExceeded, _m("programme {programmeId} has {available} left; {amount} asked")),
    "EnterpriseCapExceeded": (e.CapExceeded, _m("the enterprise may receive {available} more; {amount} asked")),
    "InvoiceAlreadyRedeemed": (e.InvoiceAlreadyRedeemed, _m("this invoice was already subsidised")),
    "RedemptionExceedsSubsidy": (e.ExceedsSubsidy, _m("{amount} exceeds the subsidy share {maxSubsidy}")),
    "ProgrammeExpired": (e.ProgrammeExpired, _m("programme {programmeId} has expired")),
    "ProgrammeNotStarted": (e.ProgrammeNotStarted, _m("programme {programmeId} has not started")),
    "ProgrammeStillActive": (e.ProgrammeStillActive, _m("programme {programmeId} is still open")),
    "AccountIsFrozen": (e.AccountFrozen, _m("account {account} is frozen")),
    "ProviderNotInProgramme": (e.ProviderNotInProgramme, _m("the provider is not approved in this programme")),
    "CategoryNotAllowed": (e.CategoryNotAllowed, _m("category {category} is outside the programme's scope")),
    "RelatedPartyRedemption": (e.RelatedParty, _m("enterprise and provider are declared related parties")),
    "ERC1155InsufficientBalance": (e.InsufficientBalance, _m("the balance is {balance} fen; {needed} fen needed")),
    "ConsentExpired": (e.ConsentRejected, _m("the enterprise's consent expired")),
    "ConsentSignerMismatch": (e.ConsentRejected, _m("the consent was not signed by the enterprise")),
    "ConsentSignatureInvalid": (e.ConsentRejected, _m("the consent signature is invalid")),
    "ConsentNonceUsed": (e.ConsentRejected, _m("the consent was already used")),
    "EnforcedPause": (e.LedgerPaused, _m("the ledger is paused by its supervisors")),
    "ParticipantAlreadyRegistered": (e.AlreadyExists, _m("account {account} is already registered")),
    "ZeroAmount": (e.InvalidInput, _m("an amount of zero is not allowed")),
}


@dataclass(frozen=True)
class ProgrammeState:
    budget: int
    cap_per_enterprise: int
    issued: int
    redeemed: int
    reclaimed: int
    revoked: int
    ratio_bps: int
    valid_from: int
    valid_until: int
    categories: int

    @property
    def outstanding(self) -> int:
        return self.issued - self.redeemed - self.reclaimed - self.revoked

    @property
    def available(self) -> int:
        return self.budget - (self.issued - self.reclaimed - self.revoked)


class VoucherChain:
    def __init__(self, deployment: Deployment, rpc: Rpc, pipeline: TxPipeline | None = None) -> None:
        self.deployment = deployment
        self.address = Web3.to_checksum_address(deployment.voucher.address)
        self.rpc = rpc
        self.pipeline = pipeline
        functions = [f for f in deployment.voucher.abi if f.get("type") == "function"]
        self._inputs: dict[str, tuple[bytes, list[str]]] = {}
        for f in functions:
            types = [canonical_type(i) for i in f["inputs"]]
            self._inputs[f["name"]] = (function_signature_to_4byte_selector(f"{f['name']}({','.join(types)})"), types)
        self._outputs = {
            f["name"]: [canonical_type(o) for o in f["outputs"]]
            for f in deployment.voucher.abi
            if f.get("type") == "function"
        }
        self.errors = ErrorDecoder(deployment.voucher.abi)
        self.events = EventDecoder(deployment.voucher.abi)
        self.clock: Callable[[], int | None] | None = None

    @property
    def chain_id(self) -> int:
        return self.deployment.chain_id

    def translate(self, revert_data: str | None, message: str) -> e.LedgerError:
        decoded = self.errors.decode(revert_data)
        if decoded is None:
            return e.ChainReverted(f"the contract refused: {message}")
        cls, build = CONTRACT_ERRORS.get(decoded.name, (e.ChainReverted, None))
        text = build(decoded.args) if build else f"the contract refused: {decoded}"
        return cls(text, contract_error=decoded.name, contract_args=_jsonable(decoded))

    def encode(self, fn: str, *args: Any) -> str:
        # Selector and types are worked out once: web3's encode_abi re-validated the whole ABI per call (~4 ms).
        selector, types = self._inputs[fn]
        return "0x" + (selector + abi_encode(types, args)).hex()

    def call(self, fn: str, *args: Any, block: str | int = "latest") -> Any:
        raw = self.rpc.eth_call(self.address, self.encode(fn, *args), block=block)
        values = abi_decode(self._outputs[fn], bytes.fromhex(raw[2:]))
        return values[0] if len(values) == 1 else values

    def call_many(self, calls: list[tuple[str, tuple[Any, ...]]]) -> tuple[list[Any], int]:
        """Several reads and the chain's clock, in one round trip to the node (all at the same latest block)."""
        requests: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", ["latest", False])]
        requests += [
            ("eth_call", [{"to": self.address, "data": self.encode(fn, *args)}, "latest"]) for fn, args in calls
        ]
        block, *raws = self.rpc.batch(requests)
        out = []
        for (fn, _), raw in zip(calls, raws, strict=True):
            values = abi_decode(self._outputs[fn], bytes.fromhex(str(raw)[2:]))
            out.append(values[0] if len(values) == 1 else values)
        return out, int(block["timestamp"], 16)

    def read_at(self, block: int, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Many reads at one block (a consistent snapshot), in batches of 20: larger ones have hung anvil."""
        out: list[Any] = []
        for i in range(0, len(calls), 20):
            chunk = calls[i : i + 20]
            raws = self.rpc.batch(
                [("eth_call", [{"to": self.address, "data": self.encode(fn, *args)}, hex(block)]) for fn, args in chunk]
            )
            for (fn, _), raw in zip(chunk, raws, strict=True):
                values = abi_decode(self._outputs[fn], bytes.fromhex(str(raw)[2:]))
                out.append(values[0] if len(values) == 1 else values)
        return out

    def send(self, sender: str, fn: str, *args: Any, kind: str, ref: str = "", wait_s: float | None = None,
             gas: int | None = None) -> TxOutcome:  # fmt: skip
        """Sends through the pipeline. A known `gas` skips the dry run: a refusal is then mined and decoded."""
        assert self.pipeline is not None, "a read-only VoucherChain cannot send"
        data = self.encode(fn, *args)
        return self.pipeline.transact(sender, self.address, data, kind=kind, ref=ref, wait_s=wait_s, gas=gas)

    def decode_logs(self, outcome: TxOutcome) -> list[DecodedEvent]:
        decoded = (self.events.decode(log) for log in outcome.logs)
        return [d for d in decoded if d is not None]

    # -- typed reads ---------------------------------------------------------------------------
    def programme(self, programme_id: int) -> ProgrammeState:
        return ProgrammeState(*self.call("programme", programme_id))

    def balance(self, holder: str, programme_id: int) -> int:
        return int(self.call("balanceOf", holder, programme_id))

    def balances(self, holder: str, programme_ids: list[int]) -> list[int]:
        """`holder`'s balance in each programme, in one eth_call (ERC-1155 balanceOfBatch: one block, one trip)."""
        if not programme_ids:
            return []
        return [int(b) for b in self.call("balanceOfBatch", [holder] * len(programme_ids), programme_ids)]

    def now(self, *, cached: bool = False) -> int:
        """The chain's clock (latest block timestamp): the one the contract's windows are checked against.

        `cached` accepts the block follower's view (a poll behind, at most a second old), where being a block
        late does not matter (a consent's deadline, an hour away).
        """
        if cached and self.clock is not None and (seen := self.clock()) is not None:
            return seen
        return int(self.rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

    def permit(self, *addresses: str) -> None:
        """Puts managed keys on the node's account allowlist (Besu's perm API; a node without one needs nothing)."""
        self._perm("perm_addAccountsToAllowlist", addresses)

    def forbid(self, *addresses: str) -> None:
        """Takes retired keys off the node's account allowlist."""
        self._perm("perm_removeAccountsFromAllowlist", addresses)

    def _perm(self, method: str, addresses: tuple[str, ...]) -> None:
        """Adds or removes only what needs it: Besu refuses to add a listed account or remove an unlisted one."""
        if not addresses:
            return
        try:
            listed = {a.lower() for a in self.rpc.call("perm_getAccountsAllowlist")}
        except RpcError as exc:
            if exc.code == -32601:  # a node without account permissioning: nothing to manage
                return
            raise
        wanted = {a.lower() for a in addresses}
        change = wanted - listed if method == "perm_addAccountsToAllowlist" else wanted & listed
        if change:
            self.rpc.call(method, [sorted(change)])

    def paused(self) -> bool:
        return bool(self.call("paused"))

    def has_role(self, role: str, account: str) -> bool:
        return bool(self.call("hasRole", ROLES[role], account))


def _jsonable(decoded: DecodedError) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, int) and abs(v) > 2**53 else v) for k, v in decoded.args.items()}
