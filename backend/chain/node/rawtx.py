"""Reads what the gateway needs from a signed raw transaction: sender, chain id, recipient, gas and size.

eth-account's `recover_transaction` took about 1 ms a transaction here, which would cost the gateway a core at
the node's ceiling; decoding the RLP ourselves and recovering with coincurve takes a few tens of microseconds.
Only the transaction types the service sends are accepted: legacy with EIP-155 replay protection, EIP-2930
and EIP-1559. Anything else is refused before it reaches the node.
"""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from coincurve import PublicKey
from Crypto.Hash import keccak as _Keccak

SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


_ADDRESSES: dict[bytes, str] = {}


class MalformedTransaction(ValueError):
    """The bytes are not a transaction of a type the gateway accepts; the message says why."""


@dataclass(frozen=True)
class RawTx:
    sender: str  # 0x-prefixed, lower case
    chain_id: int
    nonce: int
    to: str | None  # None for a contract creation
    gas: int
    size: int


def _keccak(data: bytes) -> bytes:
    return _Keccak.new(data=data, digest_bits=256).digest()


def _items(raw: bytes, start: int) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) of each item of the RLP list at `start`, and the list's end. Nested lists are kept whole."""
    kind, offset, length = _header(raw, start)
    if kind != "list":
        raise MalformedTransaction("a transaction is an RLP list")
    end = offset + length
    if end != len(raw):
        raise MalformedTransaction("trailing bytes after the transaction")
    spans, pos = [], offset
    while pos < end:
        _, item_offset, item_length = _header(raw, pos)
        spans.append((pos, item_offset + item_length))
        pos = item_offset + item_length
    if pos != end:
        raise MalformedTransaction("an item runs past the end of its list")
    return spans, end


def _header(raw: bytes, pos: int) -> tuple[str, int, int]:
    """(kind, payload offset, payload length) of the RLP item at `pos`."""
    if pos >= len(raw):
        raise MalformedTransaction("the transaction is cut short")
    b = raw[pos]
    if b < 0x80:
        return "bytes", pos, 1
    if b < 0xB8:
        return "bytes", pos + 1, b - 0x80
    if b < 0xC0:
        n = b - 0xB7
        return "bytes", pos + 1 + n, int.from_bytes(raw[pos + 1 : pos + 1 + n], "big")
    if b < 0xF8:
        return "list", pos + 1, b - 0xC0
    n = b - 0xF7
    return "list", pos + 1 + n, int.from_bytes(raw[pos + 1 : pos + 1 + n], "big")


def _value(raw: bytes, span: tuple[int, int]) -> bytes:
    kind, offset, length = _header(raw, span[0])
    if kind != "bytes" or offset + length != span[1]:
        raise MalformedTransaction("a field is not a byte string")
    return raw[offset : offset + length]


def _int(item: bytes) -> int:
    if (len(item) > 1 and item[0] == 0) or len(item) > 32:
        raise MalformedTransaction("a numeric field is not a canonical integer")
    return int.from_bytes(item, "big")


def _address(item: bytes) -> str | None:
    if item == b"":
        return None
    if len(item) != 20:
        raise MalformedTransaction("the recipient is not an address")
    return "0x" + item.hex()


def _list_header(length: int) -> bytes:
    if length < 56:
        return bytes([0xC0 + length])
    n = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0xF7 + len(n)]) + n


def _recover(message: bytes, y_parity: int, r: int, s: int) -> str:
    if y_parity not in (0, 1) or not 0 < r < 2**256 or not 0 < s <= SECP256K1_HALF_N:
        raise MalformedTransaction("the signature is not a valid low-s secp256k1 signature")
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y_parity])
    try:
        public = PublicKey.from_signature_and_message(signature, _keccak(message), hasher=None)
    except Exception:  # coincurve raises plain Exception for a signature with no key behind it
        raise MalformedTransaction("the signature does not recover a key") from None
    key = public.format(compressed=False)[1:]
    address = _ADDRESSES.get(key)
    if address is None:  # few keys send: remembering their addresses saves a hash per transaction
        if len(_ADDRESSES) > 100_000:
            _ADDRESSES.clear()
        address = _ADDRESSES[key] = "0x" + _keccak(key)[-20:].hex()
    return address


def decode(raw: bytes) -> RawTx:
    """The facts of a signed transaction, or `MalformedTransaction`."""
    if not raw:
        raise MalformedTransaction("empty transaction")
    if raw[0] >= 0xC0:
        return _legacy(raw)
    if raw[0] in (1, 2):
        return _typed(raw)
    raise MalformedTransaction(f"transaction type {raw[0]} is not accepted (only legacy, 1 and 2)")


def _legacy(raw: bytes) -> RawTx:
    spans, _ = _items(raw, 0)
    if len(spans) != 9:
        raise MalformedTransaction("a legacy transaction has 9 fields")
    v = _int(_value(raw, spans[6]))
    if v < 35:
        raise MalformedTransaction("a transaction without a chain id (pre-EIP-155) is not accepted")
    chain_id = (v - 35) // 2
    # The signed payload is the first six fields, then chain id, 0, 0 (EIP-155).
    body = raw[spans[0][0] : spans[5][1]] + rlp.encode(chain_id) + b"\x80\x80"
    sender = _recover(_list_header(len(body)) + body, (v - 35) % 2, _int(_value(raw, spans[7])),
                      _int(_value(raw, spans[8])))  # fmt: skip
    to, gas = _address(_value(raw, spans[3])), _int(_value(raw, spans[2]))
    nonce = _int(_value(raw, spans[0]))
    return RawTx(sender=sender, chain_id=chain_id, nonce=nonce, to=to, gas=gas, size=len(raw))


def _typed(raw: bytes) -> RawTx:
    spans, _ = _items(raw, 1)
    fields = 11 if raw[0] == 1 else 12
    if len(spans) != fields:
        raise MalformedTransaction(f"a type {raw[0]} transaction has {fields} fields")
    # The signed payload is the type byte and the list of every field but the signature's three.
    body = raw[spans[0][0] : spans[-4][1]]
    y_parity, r, s = (_int(_value(raw, span)) for span in spans[-3:])
    sender = _recover(raw[:1] + _list_header(len(body)) + body, y_parity, r, s)
    gas_at = 3 if raw[0] == 1 else 4
    to, gas = _address(_value(raw, spans[gas_at + 1])), _int(_value(raw, spans[gas_at]))
    chain_id, nonce = _int(_value(raw, spans[0])), _int(_value(raw, spans[1]))
    return RawTx(sender=sender, chain_id=chain_id, nonce=nonce, to=to, gas=gas, size=len(raw))
