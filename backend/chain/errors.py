"""Turns revert data into named errors with their arguments, from the contract's ABI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import function_signature_to_4byte_selector

from backend.chain.abi import canonical_type, plain_value


@dataclass(frozen=True)
class DecodedError:
    """A custom error such as `ProgrammeBudgetExceeded(programmeId=1, available=5, amount=9)`."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.name}({inner})"


class ErrorDecoder:
    """Maps 4-byte selectors to the errors declared in an ABI (plus Solidity's Error and Panic)."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        entries = [e for e in abi if e.get("type") == "error"]
        entries += [
            {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]},
            {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
        ]
        for e in entries:
            types = [canonical_type(i) for i in e["inputs"]]
            selector = function_signature_to_4byte_selector(f"{e['name']}({','.join(types)})")
            self._errors[selector] = (e["name"], [i["name"] for i in e["inputs"]], types)

    def decode(self, data: bytes | str | None) -> DecodedError | None:
        """The error `data` encodes, or None if it is empty or unknown."""
        if data is None:
            return None
        raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
        if len(raw) < 4 or raw[:4] not in self._errors:
            return None
        name, names, types = self._errors[raw[:4]]
        values = abi_decode(types, raw[4:])
        return DecodedError(name, {n: plain_value(v, t) for n, v, t in zip(names, values, types, strict=True)})
