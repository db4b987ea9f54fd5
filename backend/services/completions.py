"""How each kind of transaction finishes the record it serves: one table, used alike by the request that sent it,
the monitor (a late receipt, a transaction given up) and a retry taking over from a request that died."""

from __future__ import annotations

from backend.chain.txtypes import Completion
from backend.models.states import TxKind
from backend.services import applications, participants, programmes, redemptions, rotation, settlements, supervision

COMPLETIONS: dict[TxKind, Completion] = {
    TxKind.REGISTER: Completion(failed=participants.registration_refused),
    TxKind.CREATE_PROGRAMME: Completion(done=programmes.created),
    TxKind.ISSUE: Completion(done=applications.issued, failed=applications.issue_failed),
    TxKind.REDEEM: Completion(done=redemptions.redeemed, failed=redemptions.redeemed),
    TxKind.RECLAIM: Completion(done=supervision.record_adjustments),
    TxKind.REVOKE: Completion(done=supervision.record_adjustments),
    TxKind.FREEZE: Completion(done=participants.store_frozen),
    TxKind.UNFREEZE: Completion(done=participants.store_frozen),
    TxKind.RELATED_PARTY: Completion(done=participants.store_related),
    TxKind.SETTLEMENT_ANCHOR: Completion(done=settlements.anchored, failed=settlements.anchored),
    TxKind.ROTATE_KEY: Completion(after=rotation.resume),
    TxKind.ROTATE_KEY_MIGRATE: Completion(after=rotation.resume),
    # grant_role, pause, unpause: the chain's state is all there is to record.
}
