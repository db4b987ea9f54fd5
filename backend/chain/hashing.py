"""Keccak-256 and what the EVM derives from it (function selectors, event topics, checksummed addresses), for
modules outside this package: they hash invoices, documents and references the chain's way without importing
the chain libraries themselves."""

from __future__ import annotations

from eth_utils.abi import event_signature_to_log_topic, function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak as _keccak


def keccak(data: bytes | str) -> bytes:
    """keccak256 of bytes, or of a string's UTF-8 encoding."""
    return _keccak(text=data) if isinstance(data, str) else _keccak(data)


def selector(signature: str) -> bytes:
    """A function's 4-byte selector, from its canonical signature such as `balanceOf(address,uint256)`."""
    return function_signature_to_4byte_selector(signature)


def event_topic(signature: str) -> bytes:
    """An event's topic 0, from its canonical signature such as `TransferSingle(address,address,...)`."""
    return event_signature_to_log_topic(signature)


def checksum_address(address: str) -> str:
    """The EIP-55 mixed-case form of an address."""
    return str(to_checksum_address(address))
