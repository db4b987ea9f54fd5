"""The ledger contract's codec: calls encoded, results and events decoded, and its custom errors turned into domain
errors (one table). Pure: it needs no node, so the pipeline and the chain view can both be built on it."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.abi import function_signature_to_4byte_selector
from web3 import Web3

from backend import errors as e
from backend.chain.abi import canonical_type
from backend.chain.errors import DecodedError, ErrorDecoder
from backend.chain.events import DecodedEvent, EventDecoder
from backend.money import yuan


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


class LedgerCodec:
    def __init__(self, abi: list[dict[str, Any]], address: str) -> None:
        self.address = Web3.to_checksum_address(address)
        functions = [f for f in abi if f.get("type") == "function"]
        self._inputs: dict[str, tuple[bytes, list[str]]] = {}
        for f in functions:
            types = [canonical_type(i) for i in f["inputs"]]
            self._inputs[f["name"]] = (function_signature_to_4byte_selector(f"{f['name']}({','.join(types)})"), types)
        self._outputs = {f["name"]: [canonical_type(o) for o in f["outputs"]] for f in functions}
        self.errors = ErrorDecoder(abi)
        self.events = EventDecoder(abi)

    def encode(self, fn: str, *args: Any) -> str:
        # Selector and types are worked out once: web3's encode_abi re-validated the whole ABI per call (~4 ms).
        selector, types = self._inputs[fn]
        return "0x" + (selector + abi_encode(types, args)).hex()

    def encode_raw(self, fn: str, arguments: bytes) -> str:
        """Call data from arguments already ABI-encoded (the redemption hot path encodes its own)."""
        return "0x" + (self._inputs[fn][0] + arguments).hex()

    def decode_result(self, fn: str, raw: str) -> Any:
        values = abi_decode(self._outputs[fn], bytes.fromhex(str(raw)[2:]))
        return values[0] if len(values) == 1 else values

    def translate(self, revert_data: str | None, message: str) -> e.LedgerError:
        decoded = self.errors.decode(revert_data)
        if decoded is None:
            return e.ChainReverted(f"the contract refused: {message}")
        cls, build = CONTRACT_ERRORS.get(decoded.name, (e.ChainReverted, None))
        text = build(decoded.args) if build else f"the contract refused: {decoded}"
        return cls(text, contract_error=decoded.name, contract_args=_jsonable(decoded))

    def decode_events(self, logs: list[dict[str, Any]]) -> list[DecodedEvent]:
        decoded = (self.events.decode(log) for log in logs)
        return [d for d in decoded if d is not None]


def _jsonable(decoded: DecodedError) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, int) and abs(v) > 2**53 else v) for k, v in decoded.args.items()}
