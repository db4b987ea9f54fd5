"""Signing on the hot path, straight with libsecp256k1 (coincurve): a legacy EIP-155 transaction and a 32-byte
digest. eth-account does the same with validation and conversions around it that cost several times as much per
signature; tests check both give the same bytes."""

from __future__ import annotations

import coincurve
import rlp
from eth_utils.crypto import keccak


def sign_digest(key: coincurve.PrivateKey, digest: bytes) -> bytes:
    """65 bytes r, s, v (v = 27 or 28), s low: what eth-account's `unsafe_sign_hash` gives and ecrecover takes."""
    signature = key.sign_recoverable(digest, hasher=None)
    return signature[:64] + bytes([signature[64] + 27])


def sign_legacy(key: coincurve.PrivateKey, *, nonce: int, gas_price: int, gas: int, to: str, value: int, data: str,
                chain_id: int) -> tuple[bytes, str]:  # fmt: skip
    """A signed legacy transaction (EIP-155 replay protection) and its hash."""
    fields = [nonce, gas_price, gas, bytes.fromhex(to[2:]), value, bytes.fromhex(data[2:])]
    signature = key.sign_recoverable(keccak(rlp.encode([*fields, chain_id, 0, 0])), hasher=None)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    raw = rlp.encode([*fields, signature[64] + chain_id * 2 + 35, r, s])
    return raw, "0x" + keccak(raw).hex()
