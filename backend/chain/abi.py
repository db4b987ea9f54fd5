"""ABI type helpers shared by the call encoder and the error and event decoders."""

from __future__ import annotations

from typing import Any

from eth_utils.address import to_checksum_address


def canonical_type(item: dict[str, Any]) -> str:
    t = str(item["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(canonical_type(c) for c in item["components"]) + ")" + t[len("tuple") :]
    return t


def plain_value(value: Any, abi_type: str) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value
