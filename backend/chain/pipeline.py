"""The one path every transaction takes, and the one place that finishes the record it serves.

`submit`:
1. In one database transaction (shared with other writes arriving together: group commit), the caller's `record`
   stores or moves the record the transaction serves and says what to send; the signer's next nonce is reserved
   (atomic UPDATE ... RETURNING, safe across worker processes), the transaction signed and stored.
2. Broadcast (batched with others). "already known" is success. "nonce too low" for a transaction never mined
   means the key was used outside the service: the same call is signed again at the chain's next nonce, stored in
   place of the refused one, and sent once more.
3. Await the receipt: a future the block follower resolves; no thread waits.
4. Finish: the outcome is recorded on the transaction's row and the kind's completion handler finishes the record,
   in one database transaction. A revert is replayed to recover its custom error, recorded, then raised.
A transaction without a receipt in time stays stored: the monitor, or a retry taking over, finishes it later
through `complete`, with the same handler.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

import rlp
from sqlalchemy import insert, update
from sqlalchemy.engine import Connection
from sqlmodel import col

from backend.chain import nonces
from backend.chain.broadcast import Broadcaster, Sent
from backend.chain.keystore import Signer
from backend.chain.receipts import BlockFollower, Receipt
from backend.chain.rpc import Rpc, RpcError
from backend.chain.txtypes import Call, Completion, StoredTx, Submitted, TxOutcome
from backend.errors import ChainError, LedgerError, NonceSpent
from backend.faults import crash_point
from backend.groupcommit import GroupWriter
from backend.models import ChainTx, utcnow
from backend.models.states import TxKind, TxStatus

log = logging.getLogger(__name__)

# Turns revert data (or None) and the node's message into the domain error to raise.
Translate = Callable[[str | None, str], LedgerError]
Record = Callable[[Connection], Call]
PAUSED_SELECTOR = "0x5c975abb"  # paused()


class TxPipeline:
    def __init__(
        self,
        *,
        rpc: Rpc,
        writer: GroupWriter,
        follower: BlockFollower,
        signer: Signer,
        chain_id: int,
        to: str,
        translate: Translate,
        decode_events: Callable[[list[dict[str, Any]]], list[Any]],
        completions: dict[TxKind, Completion],
        wait_s: float = 15.0,
    ) -> None:
        self.rpc = rpc
        self.writer = writer
        self.follower = follower
        self._signer = signer
        self._chain_id = chain_id
        self.to = to  # the ledger: a permissioned node takes transactions to it only (fillers call its paused())
        self._translate = translate
        self._decode_events = decode_events
        self._completions = completions
        self._wait_s = wait_s  # how long a request waits for its receipt before answering "pending"
        self._broadcaster = Broadcaster(rpc)
        self._ready: set[str] = set()
        self._ready_lock = threading.Lock()

    # -- the path --------------------------------------------------------------------------------
    async def submit(self, sender: str, record: Record, *, wait_s: float | None = None) -> Submitted:
        """Stores, sends and finishes one transaction; raises the decoded error if the chain refused it."""
        if sender not in self._ready:
            await asyncio.to_thread(self.prepare, sender)
        stored = await self.writer.run_async(lambda conn: self.store(conn, sender, record(conn)))
        crash_point(f"pipeline.stored:{stored.kind}")
        future = self.follower.expect(stored.tx_hash)  # before sending: a fast block cannot slip past
        try:
            sent = await asyncio.wrap_future(self._broadcaster.send(stored.raw))
        except RpcError as exc:  # stored all the same: the monitor gives it up in time and fails its record
            self.follower.forget(stored.tx_hash)
            raise ChainError(f"the node refused transaction {stored.tx_hash}: {exc.message}",
                             tx_hash=stored.tx_hash) from None  # fmt: skip
        if sent is Sent.NONCE_TOO_LOW:
            renewed = await asyncio.to_thread(self._after_nonce_too_low, stored)
            if renewed is not stored:
                stored, future = renewed, self.follower.expect(renewed.tx_hash)
                sent = await asyncio.to_thread(self._send_now, renewed.raw, renewed.tx_hash)  # refused again: raises
        if sent is Sent.UNAVAILABLE:  # stored: the monitor sends it when the node is back
            self.follower.forget(stored.tx_hash)
            return Submitted(stored.tx_hash, pending=True)
        crash_point(f"pipeline.broadcast:{stored.kind}")
        receipt = await self.follower.wait(future, stored.tx_hash, self._wait_s if wait_s is None else wait_s)
        crash_point(f"pipeline.receipt:{stored.kind}")
        if receipt is None:
            return Submitted(stored.tx_hash, pending=True)
        if _reverted(receipt):
            return await asyncio.to_thread(self._finish, stored, receipt)  # raises the decoded error
        outcome = self._outcome(receipt)
        return await self.writer.run_async(lambda conn: self._complete(conn, stored, outcome))

    def submit_sync(self, sender: str, record: Record, *, wait_s: float | None = None) -> Submitted:
        """`submit`, for code running in a thread of its own (sync routes, the monitor, the CLI)."""
        return asyncio.run(self.submit(sender, record, wait_s=wait_s))

    def send(self, sender: str, call: Call, *, wait_s: float | None = None) -> Submitted:
        """A transaction with no record of its own to store first; a call without gas is dry-run first, so a
        refusal is decoded before any nonce is used."""
        if call.gas is None:
            call = dataclasses.replace(call, gas=self.estimate(sender, call.data))
        return self.submit_sync(sender, lambda _conn: call, wait_s=wait_s)

    def estimate(self, sender: str, data: str) -> int:
        """Gas for the call, or its refusal as a domain error, before any nonce is used."""
        try:
            return self.rpc.estimate_gas(sender, self.to, data) * 13 // 10 + 10_000
        except RpcError as exc:
            raise self._translate(exc.revert_data, exc.message) from None

    def prepare(self, sender: str) -> None:
        """First use of a signer in this process: its nonce row exists (at the chain's count) and its key is loaded,
        so the database transaction that signs needs neither the node nor a second transaction."""
        if sender in self._ready:
            return
        chain_next = self.rpc.pending_nonce(sender)
        self.writer.run(lambda conn: nonces.ensure_row(conn, sender, chain_next))
        self._signer.load(sender)
        with self._ready_lock:
            self._ready.add(sender)

    def store(self, conn: Connection, sender: str, call: Call) -> StoredTx:
        """Step 1 inside the caller's database transaction: the nonce reserved, the call signed and stored."""
        nonce = nonces.reserve(conn, sender)
        assert call.gas is not None, "a call is stored with its gas"
        raw, tx_hash = self._sign(sender, call.data, gas=call.gas, nonce=nonce)
        # A Core insert: the ORM's unit of work cost three times as much on this hot path.
        conn.execute(insert(ChainTx).values(signer=sender, nonce=nonce, tx_hash=tx_hash, raw=raw, kind=call.kind,
                                            ref=call.ref))  # fmt: skip
        if call.link is not None:
            call.link(conn, tx_hash)
        return StoredTx(tx_hash=tx_hash, raw=raw, sender=sender, data=call.data, kind=TxKind(call.kind), ref=call.ref)

    # -- finishing ---------------------------------------------------------------------------------
    async def follow(self, stored: StoredTx, *, wait_s: float | None = None) -> Submitted:
        """Finishes a transaction an earlier attempt stored (a retry taking over from a request that died): sent
        again if the node lost it, then finished by its kind's handler like any other. Never signs another."""
        future = self.follower.expect(stored.tx_hash)
        receipt = await asyncio.to_thread(self.resolve, stored)
        if receipt is None:
            receipt = await self.follower.wait(future, stored.tx_hash, self._wait_s if wait_s is None else wait_s)
            if receipt is None:
                return Submitted(stored.tx_hash, pending=True)
        self.follower.forget(stored.tx_hash)
        if _reverted(receipt):
            return await asyncio.to_thread(self._finish, stored, receipt)
        outcome = self._outcome(receipt)
        return await self.writer.run_async(lambda conn: self._complete(conn, stored, outcome))

    def follow_sync(self, stored: StoredTx, *, wait_s: float | None = None) -> Submitted:
        return asyncio.run(self.follow(stored, wait_s=wait_s))

    def resolve(self, stored: StoredTx) -> Receipt | None:
        """A stored transaction's receipt; None after re-sending it if the node no longer knows it."""
        receipt = self.rpc.receipt(stored.tx_hash)
        if receipt is None and self.rpc.call("eth_getTransactionByHash", [stored.tx_hash]) is None:
            self.broadcast(stored.raw, stored.tx_hash)  # the node lost it (dropped, or restarted): send it again
        return receipt

    def complete(self, stored: StoredTx, receipt: Receipt) -> Submitted:
        """Finishes a stored transaction from its receipt (the monitor, a retry taking over): the same handler as
        the request would have run. Raises the decoded error for a revert, after recording it."""
        if _reverted(receipt):
            return self._finish(stored, receipt)
        outcome = self._outcome(receipt)
        return self.writer.run(lambda conn: self._complete(conn, stored, outcome))

    def give_up(self, stored: StoredTx, error: LedgerError) -> None:
        """Fails the record of a transaction that will never be mined (the monitor's recovery gave it up)."""
        self.writer.run(lambda conn: self.handle(conn, stored, error))

    def _finish(self, stored: StoredTx, receipt: Receipt) -> Submitted:
        """A reverted transaction: its error recovered by a replay at its block, recorded, and raised."""
        block, tx_hash = int(receipt["blockNumber"], 16), str(receipt["transactionHash"])
        error = self._replay_error(stored.sender, stored.data, block)
        error.details.update(tx_hash=tx_hash, block_number=block)
        self.writer.run(lambda conn: self._complete(conn, stored, error))
        raise error

    def _complete(self, conn: Connection, stored: StoredTx, result: TxOutcome | LedgerError) -> Submitted:
        error = result if isinstance(result, LedgerError) else None
        block: int | None = None
        if isinstance(result, TxOutcome):
            block, tx_hash = result.block_number, result.tx_hash
        else:
            block, tx_hash = result.details.get("block_number"), result.details.get("tx_hash", stored.tx_hash)
        conn.execute(
            update(ChainTx)
            .where(col(ChainTx.tx_hash) == tx_hash)
            .values(
                status=TxStatus.REVERTED if error else TxStatus.CONFIRMED,
                block_number=block,
                error_code=error.code if error else None,
                error=error.message if error else None,
                updated_at=utcnow(),
            )
        )
        value = self.handle(conn, stored, result)
        return Submitted(tx_hash, outcome=result if isinstance(result, TxOutcome) else None, value=value)

    def handle(self, conn: Connection, stored: StoredTx, result: TxOutcome | LedgerError) -> Any:
        """Runs the kind's completion handler inside the caller's database transaction."""
        handler = self._completions.get(TxKind(stored.kind))
        if handler is None:
            return None
        if isinstance(result, TxOutcome):
            return handler.done(conn, stored, result) if handler.done else None
        return handler.failed(conn, stored, result) if handler.failed else None

    def _outcome(self, receipt: Receipt) -> TxOutcome:
        logs = list(receipt.get("logs", []))
        return TxOutcome(
            tx_hash=str(receipt["transactionHash"]),
            block_number=int(receipt["blockNumber"], 16),
            block_hash=str(receipt["blockHash"]),
            gas_used=int(receipt["gasUsed"], 16),
            logs=logs,
            decode=self._decode_events,
        )

    def _replay_error(self, sender: str, data: str, block: int) -> LedgerError:
        try:
            self.rpc.eth_call(self.to, data, sender=sender, block=block)
        except RpcError as exc:
            return self._translate(exc.revert_data, exc.message)
        return self._translate(None, "the transaction reverted on chain")

    # -- sending -----------------------------------------------------------------------------------
    def broadcast(self, raw: bytes, tx_hash: str) -> bool:
        """Sends a stored transaction now. True if the node has it; False if the node could not be reached."""
        return self._send_now(raw, tx_hash) is not Sent.UNAVAILABLE

    def _send_now(self, raw: bytes, tx_hash: str) -> Sent:
        try:
            sent = self._broadcaster.send_now(raw)
        except RpcError as exc:
            raise ChainError(f"the node refused transaction {tx_hash}: {exc.message}", tx_hash=tx_hash) from None
        if sent is Sent.NONCE_TOO_LOW:
            if self.rpc.receipt(tx_hash) is None:
                raise NonceSpent(tx_hash, "nonce too low")
            return Sent.ACCEPTED  # an earlier broadcast of this very transaction was mined
        return sent

    def _after_nonce_too_low(self, stored: StoredTx) -> StoredTx:
        """Mined already (an earlier broadcast of this very transaction), or its nonce is gone: then the same call,
        signed at the chain's next nonce, takes its place in the database before anything is sent."""
        if self.rpc.receipt(stored.tx_hash) is not None:
            return stored
        chain_next = self.rpc.pending_nonce(stored.sender)
        gas = int.from_bytes(rlp.decode(stored.raw)[2], "big")

        def renew(conn: Connection) -> StoredTx:
            nonce = nonces.reserve(conn, stored.sender, at_least=chain_next)
            raw, tx_hash = self._sign(stored.sender, stored.data, gas=gas, nonce=nonce)
            if not nonces.replace_unsent(conn, stored.tx_hash, nonce=nonce, raw=raw, tx_hash=tx_hash):
                raise NonceSpent(stored.tx_hash, "nonce too low")  # the monitor already gave the transaction up
            return dataclasses.replace(stored, tx_hash=tx_hash, raw=raw)

        renewed = self.writer.run(renew)
        self.follower.forget(stored.tx_hash)
        log.warning("%s's nonce was used outside the service: %s signed again as %s", stored.sender,
                    stored.tx_hash, renewed.tx_hash)  # fmt: skip
        return renewed

    def _sign(self, sender: str, data: str, *, gas: int, nonce: int, to: str | None = None) -> tuple[bytes, str]:
        tx = {"value": 0, "to": to or self.to, "data": data, "gas": gas, "gasPrice": 0, "nonce": nonce,
              "chainId": self._chain_id}  # fmt: skip
        return self._signer.sign_transaction(sender, tx)

    def sign_filler(self, sender: str, nonce: int) -> tuple[bytes, str]:
        """A call that changes nothing at `nonce` (the ledger's `paused()`): it takes the place of a transaction
        the node refuses, so the signer's later ones can be mined. Signing is deterministic: the same nonce always
        gives the same bytes, so a filler needs no row of its own."""
        return self._sign(sender, PAUSED_SELECTOR, gas=40_000, nonce=nonce)

    def forget_signers(self) -> None:
        """After a node restart, re-read every signer's nonce from the chain before its next use."""
        with self._ready_lock:
            self._ready.clear()

    def close(self) -> None:
        self._broadcaster.stop()


def _reverted(receipt: Receipt) -> bool:
    return int(receipt["status"], 16) != 1


def stored_of(tx: ChainTx) -> StoredTx:
    """A stored transaction as the pipeline knows it, from its row."""
    data = "0x" + bytes(rlp.decode(tx.raw)[5]).hex()
    return StoredTx(tx_hash=tx.tx_hash, raw=tx.raw, sender=tx.signer, data=data, kind=TxKind(tx.kind), ref=tx.ref)
