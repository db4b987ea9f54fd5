"""Key rotation for a managed enterprise or provider account (e.g. a suspected compromise).

The service makes a new managed key and moves the participant onto it: the old address is frozen first (so
nothing can be issued to it, redeemed from it or signed for it while the move runs), the new one is registered
as the same kind, takes over the old one's programme approvals (providers) and related-party declarations, and
receives every programme balance together with its cap figure (`migrateHolder`, enterprises). Only then does
the database name the new address as the participant's.

Every step first asks the chain whether it is already done, so a rotation interrupted part-way (node down, a
receipt late, the ledger paused) is finished by repeating the request, or by the monitor when a step's
transaction confirms late. A refusal is checked against the chain once more: two runs racing in separate
worker processes end in the same state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import or_, select

from backend.chain.hashing import keccak
from backend.chain.ledger import ENTERPRISE, PROVIDER
from backend.chain.txtypes import StoredTx
from backend.errors import LedgerError, NotFound, RotationInProgress, RotationInterrupted, TransactionPending
from backend.models import ChainTx, FormerAddress, Participant, RelatedParty, utcnow
from backend.models.states import TxKind
from backend.services.context import Context

log = logging.getLogger(__name__)

# A rotation's transactions (ref: the FormerAddress id); their completion continues the rotation (`resume`).
KIND, MIGRATE_KIND = TxKind.ROTATE_KEY, TxKind.ROTATE_KEY_MIGRATE
RETIRED_REASON = 900  # freeze reason code on chain: "managed key retired" (migrateHolder uses it too)
_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


def rotate(ctx: Context, *, participant_id: int) -> FormerAddress:
    """Moves the participant to a new managed key, or finishes the rotation an earlier request began."""
    lock = _lock(participant_id)
    if not lock.acquire(blocking=False):
        raise RotationInProgress(
            f"participant {participant_id}'s key is being rotated by another request; repeat once it has finished",
            participant_id=participant_id,
        )
    try:  # read under the lock: a rotation finished a moment ago has changed the address
        participant = ctx.fetch(Participant, participant_id, "participant")
        return _run(ctx, _start(ctx, participant), wait_s=None)
    finally:
        lock.release()


def resume(ctx: Context, tx: StoredTx) -> None:
    """Carries on a rotation whose transaction confirmed after its request stopped waiting (run by the monitor
    after the transaction's outcome is recorded)."""
    with ctx.read() as s:
        row = s.get(FormerAddress, int(tx.ref))
    if row is None or row.status != "rotating":
        return
    lock = _lock(row.participant_id)
    if not lock.acquire(blocking=False):
        return  # a request is at it in this process
    try:
        # A short wait: the monitor must not stall on one rotation; a late step brings it back here.
        _run(ctx, row, wait_s=2.0)
    except TransactionPending:
        pass
    except LedgerError as exc:
        log.warning("rotation %s of participant %s stopped: %s", tx.ref, row.participant_id, exc.code)
    finally:
        lock.release()


def _lock(participant_id: int) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(participant_id, threading.Lock())


def _start(ctx: Context, participant: Participant) -> FormerAddress:
    """The rotation under way for this participant, or a new one with a freshly made key."""
    participant_id = int(participant.id or 0)
    if (row := _under_way(ctx, participant_id)) is not None:
        return row
    new_address = ctx.keys.create("participant")
    ctx.chain.permit(new_address)
    row = FormerAddress(participant_id=participant_id, address=participant.address, new_address=new_address)
    with ctx.write() as s:
        s.add(row)
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            # Another worker process started it first: go on with its key (the one made here stays unused).
            if (row_found := _under_way(ctx, participant_id)) is not None:
                return row_found
            raise
    return row


def _under_way(ctx: Context, participant_id: int) -> FormerAddress | None:
    with ctx.read() as s:
        q = select(FormerAddress).where(
            FormerAddress.participant_id == participant_id, FormerAddress.status == "rotating"
        )
        return s.exec(q).first()


def _run(ctx: Context, row: FormerAddress, *, wait_s: float | None) -> FormerAddress:
    participant = ctx.fetch(Participant, row.participant_id, "participant")
    old, new, ref = row.address, row.new_address, str(row.id)
    chain, admin, supervisor = ctx.chain, ctx.operators["admin"], ctx.operators["supervisor"]

    def send(sender: str, fn: str, *args: Any, kind: TxKind = KIND) -> str:
        return chain.send(sender, fn, *args, kind=kind, ref=ref, wait_s=wait_s).tx_hash

    def frozen(address: str) -> bool:
        return bool(chain.call("participant", address)[1])

    def registered() -> bool:
        return int(chain.call("participant", new)[0]) != 0

    on_chain_kind = ENTERPRISE if participant.kind == "enterprise" else PROVIDER
    # migrateHolder freezes the old key too, but only at the move: this closes the window before it (a late
    # issuance into a programme not in the move's list), and providers and empty enterprises have no move.
    _step("freeze the old key", partial(frozen, old), partial(send, supervisor, "freeze", old, RETIRED_REASON))
    _step(
        "register the new key",
        registered,
        partial(send, admin, "registerParticipant", new, on_chain_kind, keccak(participant.credit_code)),
    )
    if participant.kind == "provider":
        for pid in _programmes_allowing(ctx, old):
            _step(
                f"approve the new key in programme {pid}",
                partial(chain.call, "isProgrammeProvider", pid, new),
                partial(send, admin, "setProgrammeProvider", pid, new, True),
            )
    for enterprise, provider in _related_pairs(ctx, participant, new):
        _step(
            "carry over a related-party declaration",
            partial(chain.call, "isRelatedParty", enterprise, provider),
            partial(send, admin, "setRelatedParty", enterprise, provider, True),
        )
    if participant.kind == "enterprise" and (held := _programmes_held(ctx, old)):
        _step(
            "move the balances to the new key",
            lambda: not _programmes_held(ctx, old),
            partial(send, admin, "migrateHolder", old, new, held, kind=MIGRATE_KIND),
        )
    if participant.frozen:  # a supervisor's freeze holds the participant, whichever key it uses
        _step(
            "keep the participant frozen",
            partial(frozen, new),
            partial(send, supervisor, "freeze", new, RETIRED_REASON),
        )
    return _complete(ctx, row, _migration_tx(ctx, ref))


def _step(name: str, done: Callable[[], object], act: Callable[[], object]) -> None:
    """Does `act` unless the chain shows it done; a refusal that the chain shows done anyway is success."""
    if done():
        return
    try:
        act()
    except TransactionPending:
        raise  # tracked: the monitor (or a repeat) carries on from here
    except LedgerError as exc:
        if done():
            return
        raise RotationInterrupted(
            f"key rotation stopped at '{name}': {exc.message}. Nothing is lost; repeat the request to continue",
            step=name,
            cause=exc.code,
        ) from None


def _programmes_held(ctx: Context, address: str) -> list[int]:
    """Every programme in which `address` holds vouchers or has an issued-to figure (its cap use)."""
    count = int(ctx.chain.call("programmeCount"))
    ids = list(range(1, count + 1))
    calls: list[tuple[str, tuple[Any, ...]]] = []
    for pid in ids:
        calls += [("issuedTo", (pid, address)), ("balanceOf", (address, pid))]
    values = ctx.chain.read_at(ctx.chain.rpc.block_number(), calls)
    return [pid for i, pid in enumerate(ids) if values[2 * i] or values[2 * i + 1]]


def _programmes_allowing(ctx: Context, provider: str) -> list[int]:
    count = int(ctx.chain.call("programmeCount"))
    ids = list(range(1, count + 1))
    allowed = ctx.chain.read_at(ctx.chain.rpc.block_number(), [("isProgrammeProvider", (i, provider)) for i in ids])
    return [pid for pid, yes in zip(ids, allowed, strict=True) if yes]


def _related_pairs(ctx: Context, participant: Participant, new: str) -> list[tuple[str, str]]:
    """(enterprise, provider) address pairs that must hold for the new key: the chain keys them by address."""
    with ctx.read() as s:
        rows = s.exec(
            select(RelatedParty).where(
                or_(RelatedParty.enterprise_id == participant.id, RelatedParty.provider_id == participant.id)
            )
        ).all()
        pairs = []
        for r in rows:
            other = s.get(Participant, r.provider_id if r.enterprise_id == participant.id else r.enterprise_id)
            if other is None:
                continue
            pairs.append((new, other.address) if r.enterprise_id == participant.id else (other.address, new))
    return pairs


def _migration_tx(ctx: Context, ref: str) -> str | None:
    """The rotation's confirmed migrateHolder transaction (None if there was nothing to move)."""
    with ctx.read() as s:
        q = select(ChainTx.tx_hash).where(
            ChainTx.kind == MIGRATE_KIND, ChainTx.ref == ref, ChainTx.status == "confirmed"
        )
        return s.exec(q).first()


def _complete(ctx: Context, row: FormerAddress, migration_tx: str | None) -> FormerAddress:
    """The database follows the chain: the participant's address is now the new key's."""
    with ctx.write() as s:
        db_row = s.get(FormerAddress, row.id)
        participant = s.get(Participant, row.participant_id)
        if db_row is None or participant is None:
            raise NotFound("key rotation", row.id)
        if db_row.status == "rotating":
            db_row.status, db_row.retired_at, db_row.migration_tx = "retired", utcnow(), migration_tx
            participant.address = db_row.new_address
            s.add_all([db_row, participant])
            s.commit()
            ctx.chain.forbid(db_row.address)  # frozen and empty: it has nothing left to send
        return db_row
