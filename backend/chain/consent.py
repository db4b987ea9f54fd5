"""The enterprise's EIP-712 consent to one redemption: the claim's fields plus the provider that may redeem it.

Hashing is done here by hand (domain separator cached) because it sits on the redemption hot path;
tests check it against eth-account's generic EIP-712 encoder and the contract's own `consentDigest`.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from functools import lru_cache

from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_typing import Hash32
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

DOMAIN_NAME = "ComputeVoucher"
DOMAIN_VERSION = "1"
CONSENT_TYPE = (
    "Consent(address enterprise,address provider,uint256 programmeId,uint256 amount,uint256 invoiceAmount,"
    "bytes32 invoiceHash,uint8 category,uint256 nonce,uint256 deadline)"
)
CONSENT_TYPEHASH = keccak(text=CONSENT_TYPE)
_DOMAIN_TYPEHASH = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")


@dataclass(frozen=True)
class Redemption:
    """Field for field the contract's `Redemption` struct (amounts in fen)."""

    enterprise: str
    programme_id: int
    amount: int
    invoice_amount: int
    invoice_hash: bytes
    category: int
    nonce: int
    deadline: int

    def as_struct(self) -> tuple[object, ...]:
        """The tuple web3 passes for the contract's `Redemption calldata r`."""
        return astuple(self)


@lru_cache(maxsize=16)
def domain_separator(chain_id: int, contract: str) -> bytes:
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [_DOMAIN_TYPEHASH, keccak(text=DOMAIN_NAME), keccak(text=DOMAIN_VERSION), chain_id, contract],
        )
    )


def _word(value: int | bytes | str) -> bytes:
    """One static ABI word: an address (hex), an unsigned integer, or bytes32."""
    if isinstance(value, str):
        return bytes.fromhex(value[2:]).rjust(32, b"\0")
    if isinstance(value, int):
        return value.to_bytes(32, "big")
    return value


def _struct_words(r: Redemption) -> bytes:
    """The Redemption struct as ABI words (all its fields are static), in the contract's field order."""
    fields = (r.enterprise, r.programme_id, r.amount, r.invoice_amount, r.invoice_hash, r.category, r.nonce,
              r.deadline)  # fmt: skip
    return b"".join(_word(v) for v in fields)


def consent_digest(r: Redemption, provider: str, *, chain_id: int, contract: str) -> bytes:
    # Static fields only: their ABI encoding is one 32-byte word each, written here (eth_abi took ~0.1 ms).
    words = (CONSENT_TYPEHASH, r.enterprise, provider, r.programme_id, r.amount, r.invoice_amount, r.invoice_hash,
             r.category, r.nonce, r.deadline)  # fmt: skip
    struct_hash = keccak(b"".join(_word(v) for v in words))
    return keccak(b"\x19\x01" + domain_separator(chain_id, to_checksum_address(contract)) + struct_hash)


def redeem_arguments(r: Redemption, signature: bytes) -> bytes:
    """The ABI encoding of `redeem(Redemption r, bytes signature)`'s arguments: the struct inline, then the
    signature's offset, length and padded bytes."""
    padded = signature + b"\0" * (-len(signature) % 32)
    return _struct_words(r) + _word(9 * 32) + _word(len(signature)) + padded


def sign_consent(signer: LocalAccount, r: Redemption, provider: str, *, chain_id: int, contract: str) -> bytes:
    """65-byte signature (r, s, v) with low s, as the contract's ECDSA check requires."""
    signed = signer.unsafe_sign_hash(Hash32(consent_digest(r, provider, chain_id=chain_id, contract=contract)))
    return bytes(signed.signature)
