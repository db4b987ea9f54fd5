"""Fast decoding of the voucher contract's logs for `voucher audit verify` and the event mirror: fields are
sliced out of the hex (a topic or a data word each), since the generic ABI decoder cost more than everything
else the audit does together. The layouts are ComputeVoucher's and ERC-1155's; tests check them against the
ABI-driven `EventDecoder` on real logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.chain.hashing import event_topic

LAYOUTS = {
    "TransferSingle": "address indexed operator,address indexed from,address indexed to,uint256 id,uint256 value",
    "TransferBatch": "address indexed operator,address indexed from,address indexed to,uint256[] ids,uint256[] values",
    "ProgrammeCreated": "uint256 indexed programmeId,uint128 budget,uint128 capPerEnterprise,uint16 ratioBps,"
    "uint64 validFrom,uint64 validUntil,uint256 categories",
    "VoucherIssued": "uint256 indexed programmeId,address indexed enterprise,uint256 amount,bytes32 applicationRef",
    "VoucherRedeemed": "uint256 indexed programmeId,address indexed enterprise,address indexed provider,"
    "uint256 amount,uint256 invoiceAmount,bytes32 invoiceHash,uint8 category,uint256 nonce",
    "VoucherReclaimed": "uint256 indexed programmeId,address indexed holder,uint256 amount,uint256 budgetAvailable",
    "VoucherRevoked": "uint256 indexed programmeId,address indexed holder,uint256 amount,uint32 reasonCode,"
    "address indexed by",
    "VoucherMigrated": "uint256 indexed programmeId,address indexed from,address indexed to,uint256 amount",
    "HashAnchored": "bytes32 indexed digest,bytes32 indexed kind,address indexed by",
}
# (name, in topics?, position, conversion) per field; conversions take the 64 hex digits of one word.
Field = tuple[str, bool, int, str]
_CONVERT: dict[str, Callable[[str], Any]] = {
    "address": lambda w: "0x" + w[24:],
    "bytes32": lambda w: "0x" + w,
    "uint": lambda w: int(w, 16),
}


def _plan(layout: str) -> list[Field]:
    plan: list[Field] = []
    topic, word = 1, 0
    for item in layout.split(","):
        parts = item.split()
        abi_type, name, indexed = parts[0], parts[-1], "indexed" in parts
        kind = "array" if abi_type.endswith("[]") else abi_type if abi_type in ("address", "bytes32") else "uint"
        plan.append((name, indexed, topic if indexed else word, kind))
        topic, word = (topic + 1, word) if indexed else (topic, word + 1)
    return plan


def _signature(name: str, layout: str) -> str:
    return f"{name}({','.join(item.split()[0] for item in layout.split(','))})"


PLANS = {"0x" + event_topic(_signature(n, lay)).hex(): (n, _plan(lay)) for n, lay in LAYOUTS.items()}
ADDRESSES = {name: tuple(f[0] for f in plan if f[3] == "address") for name, plan in PLANS.values()}  # per event


def decode(log: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(event name, fields) of one of the layouts above; addresses lower case, bytes32 as 0x-hex, ints as int."""
    topics = log["topics"]
    found = PLANS.get(topics[0].lower()) if topics else None
    if found is None:
        return None
    name, plan = found
    data = log["data"][2:]
    args: dict[str, Any] = {}
    for key, indexed, pos, kind in plan:
        if indexed:
            args[key] = _CONVERT[kind](topics[pos][2:].lower())
        elif kind == "array":  # a dynamic uint256[]: the word holds its offset, where its length comes first
            start = int(data[pos * 64 : pos * 64 + 64], 16) * 2
            length = int(data[start : start + 64], 16)
            args[key] = [int(data[start + 64 * (i + 1) : start + 64 * (i + 2)], 16) for i in range(length)]
        else:
            args[key] = _CONVERT[kind](data[pos * 64 : pos * 64 + 64].lower())
    return name, args
