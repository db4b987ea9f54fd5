"""The one path every transaction takes.

1. Dry-run it (eth_estimateGas): a refusal is decoded into a domain error before any nonce is used.
2. Reserve the signer's next nonce in the database (atomic UPDATE ... RETURNING: safe across threads and
   worker processes), sign locally and store the signed transaction, in one short database transaction.
3. Broadcast. "already known" means the node has it: success, not an error. "nonce too low" for a transaction
   never mined means the key was used outside the service: the same call is signed again at the chain's next
   nonce, stored in place of the refused one (before it is sent), and sent once more.
4. Wait for the receipt; check `status`; a revert is replayed to recover its custom error.
A transaction without a receipt in time stays tracked: the monitor rebroadcasts and resolves it later.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import rlp
from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from backend.chain import nonces
from backend.chain.keystore import Signer
from backend.chain.rpc import Rpc, RpcError
from backend.db import session_scope
from backend.errors import ChainError, LedgerError, NodeUnavailable, NonceSpent, TransactionPending
from backend.faults import crash_point
from backend.models import ChainTx, utcnow

log = logging.getLogger(__name__)

# Turns revert data (or None) and the node's message into the domain error to raise.
Translate = Callable[[str | None, str], LedgerError]
_KNOWN = ("already known", "known transaction", "already imported", "alreadyknown")


@dataclass(frozen=True)
class StoredTx:
    """A signed transaction, stored before broadcast, with what is needed to replay it."""

    tx_hash: str
    raw: bytes
    sender: str
    to: str
    data: str
    kind: str = ""


@dataclass(frozen=True)
class TxOutcome:
    tx_hash: str
    block_number: int
    block_hash: str
    gas_used: int
    logs: list[dict[str, Any]] = field(default_factory=list)


PAUSED_SELECTOR = "0x5c975abb"  # paused()


class TxPipeline:
    def __init__(
        self,
        *,
        rpc: Rpc,
        engine: Engine,
        signer: Signer,
        chain_id: int,
        translate: Translate,
        watcher: Any,
        wait_s: float = 15.0,
        filler_to: str | None = None,
    ) -> None:
        self.rpc = rpc
        # A permissioned node takes transactions only to the ledger: a filler calls its `paused()` view there.
        self._filler_to = filler_to
        self._engine = engine
        self._signer = signer
        self._chain_id = chain_id
        self._translate = translate
        self._watcher = watcher
        self._wait_s = wait_s  # how long a request waits for its receipt before answering "pending"
        self._ready: set[str] = set()
        self._ready_lock = threading.Lock()

    # -- the path --------------------------------------------------------------------------------
    def transact(
        self,
        sender: str,
        to: str,
        data: str,
        *,
        kind: str,
        ref: str = "",
        wait_s: float | None = None,
        gas: int | None = None,
    ) -> TxOutcome:
        """The whole path in one call, for transactions with no record of their own to move along."""
        if gas is None:
            gas = self.estimate(sender, to, data)
        self.prepare(sender)
        with session_scope(self._engine) as s:
            stored = self.store(s, sender, to, data, gas=gas, kind=kind, ref=ref)
        crash_point(f"pipeline.stored:{kind}")
        receipt = self.send_and_wait(stored, wait_s)
        result = self.outcome(stored, receipt)
        with session_scope(self._engine) as s:
            self.record(s, stored, result)
        if isinstance(result, LedgerError):
            raise result
        return result

    def estimate(self, sender: str, to: str, data: str) -> int:
        """Gas for the call, or its refusal as a domain error, before any nonce is used."""
        try:
            return self.rpc.estimate_gas(sender, to, data) * 13 // 10 + 10_000
        except RpcError as exc:
            raise self._translate(exc.revert_data, exc.message) from None

    def prepare(self, sender: str) -> None:
        """Everything that needs the node or a second database session, done before `store`'s transaction."""
        self._ensure_signer(sender)
        self._signer.load(sender)

    def store(self, s: Session, sender: str, to: str, data: str, *, gas: int, kind: str, ref: str) -> StoredTx:
        """Reserves the nonce, signs and stores, inside the caller's database transaction (after `prepare`)."""
        nonce = nonces.reserve(s.connection(), sender)
        raw, tx_hash = self._sign(sender, to, data, gas=gas, nonce=nonce)
        # A Core insert: the ORM's unit of work cost three times as much on this hot path.
        s.connection().execute(
            insert(ChainTx).values(signer=sender, nonce=nonce, tx_hash=tx_hash, raw=raw, kind=kind, ref=ref)
        )
        return StoredTx(tx_hash=tx_hash, raw=raw, sender=sender, to=to, data=data, kind=kind)

    def send_and_wait(self, stored: StoredTx, wait_s: float | None = None) -> dict[str, Any]:
        """Broadcasts a stored transaction and waits for its receipt; raises TransactionPending on time-out.
        The receipt may be a re-signed successor's (its nonce was spent outside): `outcome` follows the receipt."""
        self._watcher.expect(stored.tx_hash)
        try:
            sent = self.broadcast(stored.raw, stored.tx_hash)
        except NonceSpent as spent:
            self._watcher.forget(stored.tx_hash)
            stored = self._renew(stored, spent)
            self._watcher.expect(stored.tx_hash)
            sent = self.broadcast(stored.raw, stored.tx_hash)  # once: refused again, the caller gets NonceSpent
        if not sent:  # stored: the monitor sends it when the node is back
            raise TransactionPending(
                f"the chain node did not answer; transaction {stored.tx_hash} is stored and will be sent",
                tx_hash=stored.tx_hash,
            )
        crash_point(f"pipeline.broadcast:{stored.kind}")
        receipt: dict[str, Any] | None = self._watcher.wait(stored.tx_hash, self._wait_s if wait_s is None else wait_s)
        crash_point(f"pipeline.receipt:{stored.kind}")
        if receipt is None:
            raise TransactionPending(
                f"transaction {stored.tx_hash} was sent but is not yet in a block; it is tracked and will be resolved",
                tx_hash=stored.tx_hash,
            )
        return receipt

    def outcome(self, stored: StoredTx, receipt: dict[str, Any]) -> TxOutcome | LedgerError:
        """What the receipt means: the outcome, or for a revert the decoded error (replayed at its block)."""
        block, tx_hash = int(receipt["blockNumber"], 16), str(receipt["transactionHash"])
        if int(receipt["status"], 16) != 1:
            error = self._replay_error(stored.sender, stored.to, stored.data, block)
            error.details.update(tx_hash=tx_hash, block_number=block)
            return error
        return TxOutcome(
            tx_hash=tx_hash,
            block_number=block,
            block_hash=str(receipt["blockHash"]),
            gas_used=int(receipt["gasUsed"], 16),
            logs=list(receipt.get("logs", [])),
        )

    def record(self, s: Session, stored: StoredTx, result: TxOutcome | LedgerError) -> None:
        """Stores the outcome on the transaction's row, inside the caller's database transaction."""
        error = result if isinstance(result, LedgerError) else None
        block = None if error else result.block_number  # type: ignore[union-attr]
        tx_hash = stored.tx_hash if error else result.tx_hash  # type: ignore[union-attr]
        if error is not None:
            block, tx_hash = error.details.get("block_number"), error.details.get("tx_hash", tx_hash)
        s.connection().execute(
            update(ChainTx)
            .where(col(ChainTx.tx_hash) == tx_hash)
            .values(
                status="reverted" if error else "confirmed",
                block_number=block,
                error_code=error.code if error else None,
                error=error.message if error else None,
                updated_at=utcnow(),
            )
        )

    def broadcast(self, raw: bytes, tx_hash: str) -> bool:
        """Sends a stored transaction. True if the node has it now; False if the node could not be reached."""
        try:
            self.rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
        except NodeUnavailable:
            log.warning("broadcast of %s deferred: node unavailable", tx_hash)
            return False
        except RpcError as exc:
            message = exc.message.lower()
            if any(k in message for k in _KNOWN):
                return True
            if "nonce too low" in message:
                if self.rpc.receipt(tx_hash) is not None:
                    return True  # an earlier broadcast of this very transaction was mined
                raise NonceSpent(tx_hash, exc.message) from None
            raise ChainError(f"the node refused transaction {tx_hash}: {exc.message}", tx_hash=tx_hash) from None
        return True

    def _sign(self, sender: str, to: str, data: str, *, gas: int, nonce: int) -> tuple[bytes, str]:
        tx = {"value": 0, "to": to, "data": data, "gas": gas, "gasPrice": 0, "nonce": nonce, "chainId": self._chain_id}
        return self._signer.sign_transaction(sender, tx)

    def _renew(self, stored: StoredTx, spent: NonceSpent) -> StoredTx:
        """`stored` never ran and its nonce is gone: the same call, signed at the chain's next nonce, takes its
        place in the database (with every record naming it) before anything is sent."""
        chain_next = self.rpc.pending_nonce(stored.sender)
        gas = int.from_bytes(rlp.decode(stored.raw)[2], "big")
        with session_scope(self._engine) as s:
            conn = s.connection()
            nonce = nonces.reserve(conn, stored.sender, at_least=chain_next)
            raw, tx_hash = self._sign(stored.sender, stored.to, stored.data, gas=gas, nonce=nonce)
            if not nonces.replace_unsent(conn, stored.tx_hash, nonce=nonce, raw=raw, tx_hash=tx_hash):
                raise spent  # rolls the reservation back: the monitor already gave the transaction up
        log.warning(
            "%s's nonce was used outside the service: %s signed again as %s", stored.sender, stored.tx_hash, tx_hash
        )
        return dataclasses.replace(stored, tx_hash=tx_hash, raw=raw)

    def _replay_error(self, sender: str, to: str, data: str, block: int) -> LedgerError:
        try:
            self.rpc.eth_call(to, data, sender=sender, block=block)
        except RpcError as exc:
            return self._translate(exc.revert_data, exc.message)
        return self._translate(None, "the transaction reverted on chain")

    # -- nonces ----------------------------------------------------------------------------------
    def _ensure_signer(self, sender: str) -> None:
        """First use of a signer in this process: make sure its nonce row exists (chain's count if new)."""
        if sender in self._ready:
            return
        chain_next = self.rpc.pending_nonce(sender)
        with session_scope(self._engine) as s:
            nonces.ensure_row(s, sender, chain_next)
        with self._ready_lock:
            self._ready.add(sender)

    @property
    def engine(self) -> Engine:
        return self._engine

    def sign_filler(self, sender: str, nonce: int) -> tuple[bytes, str]:
        """A call that changes nothing at `nonce` (the ledger's `paused()`, or a transfer of nothing to itself on
        a node without a ledger): it takes the place of a transaction the node refuses, so the signer's later
        ones can be mined. Signing is deterministic: the same nonce always gives the same bytes, so a filler
        needs no row of its own."""
        to, data = (self._filler_to, PAUSED_SELECTOR) if self._filler_to else (sender, "0x")
        return self._sign(sender, to, data, gas=40_000, nonce=nonce)

    def forget_signers(self) -> None:
        """After a node restart, re-read every signer's nonce from the chain before its next use."""
        with self._ready_lock:
            self._ready.clear()

    def unresolved(self, older_than_s: float) -> list[ChainTx]:
        """Stored transactions with no recorded outcome, in the order they were made: each signer's nonces in
        order, and across signers as they first happened (an issuance after the registration it needs)."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with Session(self._engine) as s:
            q = select(ChainTx).where(ChainTx.status == "signed", col(ChainTx.created_at) < cutoff)
            return list(s.exec(q.order_by(col(ChainTx.id))).all())

    def resolve(self, tx: ChainTx) -> TxOutcome | LedgerError | None:
        """For a stored transaction: its outcome if mined (recorded now), else None after re-sending it."""
        receipt = self.rpc.receipt(tx.tx_hash)
        if receipt is None:
            if self.rpc.call("eth_getTransactionByHash", [tx.tx_hash]) is None:
                self.broadcast(tx.raw, tx.tx_hash)  # the node lost it (dropped, or restarted): send it again
            return None
        stored = _stored(tx)
        result = self.outcome(stored, receipt)
        with session_scope(self._engine) as s:
            self.record(s, stored, result)
        return result

    def settle(self, tx_hash: str, wait_s: float | None = None) -> TxOutcome | LedgerError:
        """The outcome of a stored transaction (re-sent first if the node lost it), for a request that takes
        over from one that died after storing it; TransactionPending if it is not mined in time."""
        with Session(self._engine) as s:
            tx = s.exec(select(ChainTx).where(ChainTx.tx_hash == tx_hash)).one()
        result = self.resolve(tx)
        if result is not None:
            return result
        stored = _stored(tx)
        receipt = self._watcher.wait(tx_hash, self._wait_s if wait_s is None else wait_s)
        if receipt is None:
            raise TransactionPending(f"transaction {tx_hash} is not yet in a block; it is tracked", tx_hash=tx_hash)
        result = self.outcome(stored, receipt)
        with session_scope(self._engine) as s:
            self.record(s, stored, result)
        return result

    def latest(self, kind: str, ref: str) -> ChainTx | None:
        """The newest stored transaction of `kind` for `ref` (what a resumed request looks for)."""
        with Session(self._engine) as s:
            q = select(ChainTx).where(ChainTx.kind == kind, ChainTx.ref == ref).order_by(col(ChainTx.id).desc())
            return s.exec(q).first()


def _stored(tx: ChainTx) -> StoredTx:
    to, data = decode_raw(tx.raw)
    return StoredTx(tx_hash=tx.tx_hash, raw=tx.raw, sender=tx.signer, to=to, data=data, kind=tx.kind)


def decode_raw(raw: bytes) -> tuple[str, str]:
    """The `to` and `data` of a signed legacy transaction."""
    fields = rlp.decode(raw)
    return "0x" + bytes(fields[3]).hex(), "0x" + bytes(fields[5]).hex()
