"""The service's view of the ComputeVoucher contract: typed reads, sends through the pipeline, and the node's
account allowlist. Encoding and error translation are the codec's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from backend.chain.codec import LedgerCodec
from backend.chain.deploy import Deployment
from backend.chain.events import DecodedEvent
from backend.chain.pipeline import TxPipeline
from backend.chain.rpc import Rpc, RpcError
from backend.chain.txtypes import Call, Submitted, TxOutcome
from backend.errors import LedgerError, TransactionPending
from backend.models.states import TxKind

ENTERPRISE, PROVIDER = 1, 2
ROLES = {
    "issuer": Web3.keccak(text="ISSUER_ROLE"),
    "finance": Web3.keccak(text="FINANCE_ROLE"),
    "supervisor": Web3.keccak(text="SUPERVISOR_ROLE"),
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
    """Reads at the latest block (or one given), and sends through the pipeline (None: a read-only view)."""

    def __init__(self, deployment: Deployment, rpc: Rpc, codec: LedgerCodec, pipeline: TxPipeline | None = None):
        self.deployment = deployment
        self.codec = codec
        self.address = codec.address
        self.rpc = rpc
        self.pipeline = pipeline
        self.events, self.errors = codec.events, codec.errors
        self.clock: Callable[[], int | None] | None = None

    @property
    def chain_id(self) -> int:
        return self.deployment.chain_id

    def translate(self, revert_data: str | None, message: str) -> LedgerError:
        return self.codec.translate(revert_data, message)

    def encode(self, fn: str, *args: Any) -> str:
        return self.codec.encode(fn, *args)

    def call(self, fn: str, *args: Any, block: str | int = "latest") -> Any:
        return self.codec.decode_result(fn, self.rpc.eth_call(self.address, self.encode(fn, *args), block=block))

    def call_many(self, calls: list[tuple[str, tuple[Any, ...]]]) -> tuple[list[Any], int]:
        """Several reads and the chain's clock, in one round trip to the node (all at the same latest block)."""
        requests: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", ["latest", False])]
        requests += [
            ("eth_call", [{"to": self.address, "data": self.encode(fn, *args)}, "latest"]) for fn, args in calls
        ]
        block, *raws = self.rpc.batch(requests)
        out = [self.codec.decode_result(fn, raw) for (fn, _), raw in zip(calls, raws, strict=True)]
        return out, int(block["timestamp"], 16)

    def read_at(self, block: int, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Many reads at one block (a consistent snapshot), in batches of 20: larger ones have hung anvil."""
        out: list[Any] = []
        for i in range(0, len(calls), 20):
            chunk = calls[i : i + 20]
            raws = self.rpc.batch(
                [("eth_call", [{"to": self.address, "data": self.encode(fn, *args)}, hex(block)]) for fn, args in chunk]
            )
            out += [self.codec.decode_result(fn, raw) for (fn, _), raw in zip(chunk, raws, strict=True)]
        return out

    def send(self, sender: str, fn: str, *args: Any, kind: TxKind, ref: str = "", wait_s: float | None = None,
             gas: int | None = None) -> Submitted:  # fmt: skip
        """Sends through the pipeline, with no record of its own stored first: the kind's completion handler
        records what it did. A known `gas` skips the dry run: a refusal is then mined and decoded."""
        assert self.pipeline is not None, "a read-only VoucherChain cannot send"
        sent = self.pipeline.send(sender, Call(kind, self.encode(fn, *args), ref, gas), wait_s=wait_s)
        if sent.pending:  # stored and tracked: its completion handler records it once mined
            raise TransactionPending(
                f"transaction {sent.tx_hash} was sent but is not yet in a block; it is tracked and will be resolved",
                tx_hash=sent.tx_hash,
            )
        return sent

    def decode_logs(self, outcome: TxOutcome) -> list[DecodedEvent]:
        return self.codec.decode_events(outcome.logs)

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
