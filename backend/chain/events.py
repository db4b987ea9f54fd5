"""Decodes raw JSON-RPC logs into (event name, arguments) from the contract's ABI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import event_signature_to_log_topic
from eth_utils.address import to_checksum_address

from backend.chain.abi import canonical_type, plain_value


@dataclass(frozen=True)
class DecodedEvent:
    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    address: str


class EventDecoder:
    def __init__(self, abi: list[dict[str, Any]]) -> None:
        self._events: dict[str, dict[str, Any]] = {}
        for e in abi:
            if e.get("type") == "event":
                types = ",".join(canonical_type(i) for i in e["inputs"])
                topic = "0x" + event_signature_to_log_topic(f"{e['name']}({types})").hex()
                self._events[topic] = e

    def topic(self, name: str) -> str:
        return next(t for t, e in self._events.items() if e["name"] == name)

    def decode(self, log: dict[str, Any]) -> DecodedEvent | None:
        topics = [str(t).lower() for t in log["topics"]]
        event = self._events.get(topics[0]) if topics else None
        if event is None:
            return None
        indexed = [i for i in event["inputs"] if i["indexed"]]
        plain = [i for i in event["inputs"] if not i["indexed"]]
        args: dict[str, Any] = {}
        for item, topic in zip(indexed, topics[1:], strict=True):
            t = canonical_type(item)
            (value,) = abi_decode([t], bytes.fromhex(topic[2:]))
            args[item["name"]] = plain_value(value, t)
        data = bytes.fromhex(str(log["data"])[2:])
        values = abi_decode([canonical_type(i) for i in plain], data)
        for item, value in zip(plain, values, strict=True):
            args[item["name"]] = plain_value(value, canonical_type(item))
        ordered = {i["name"]: args[i["name"]] for i in event["inputs"]}
        return DecodedEvent(
            name=event["name"],
            args=ordered,
            block_number=int(log["blockNumber"], 16),
            block_hash=str(log["blockHash"]),
            tx_hash=str(log["transactionHash"]),
            log_index=int(log["logIndex"], 16),
            address=to_checksum_address(log["address"]),
        )
