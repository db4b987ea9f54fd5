"""The hot path's own signing and encoding give byte for byte what eth-account and eth-abi give."""

from __future__ import annotations

import os

import coincurve
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_typing import Hash32

from backend.chain.consent import Redemption, redeem_arguments
from backend.chain.signing import sign_digest, sign_legacy


def test_a_legacy_transaction_signs_to_the_same_bytes_and_hash_as_eth_account() -> None:
    for _ in range(20):
        account = Account.create()
        tx = {"nonce": int.from_bytes(os.urandom(3), "big"), "gasPrice": 0, "gas": 200_000, "value": 0,
              "to": Account.create().address, "data": "0x" + os.urandom(300).hex(), "chainId": 741_852}  # fmt: skip
        expected = account.sign_transaction(tx)
        key = coincurve.PrivateKey(bytes(account.key))
        raw, tx_hash = sign_legacy(key, nonce=tx["nonce"], gas_price=0, gas=tx["gas"], to=tx["to"], value=0,
                                   data=tx["data"], chain_id=tx["chainId"])  # fmt: skip
        assert raw == bytes(expected.raw_transaction)
        assert tx_hash == "0x" + bytes(expected.hash).hex()
        assert Account.recover_transaction(raw) == account.address


def test_a_digest_signs_to_the_same_65_bytes_as_eth_account() -> None:
    for _ in range(20):
        account, digest = Account.create(), os.urandom(32)
        expected = account.unsafe_sign_hash(Hash32(digest)).signature
        assert sign_digest(coincurve.PrivateKey(bytes(account.key)), digest) == bytes(expected)


def test_redeem_arguments_are_the_abi_encoding_of_the_struct_and_the_signature() -> None:
    r = Redemption(enterprise=Account.create().address, programme_id=7, amount=12_345, invoice_amount=99_999,
                   invoice_hash=os.urandom(32), category=2, nonce=41, deadline=2**40)  # fmt: skip
    for signature in (os.urandom(65), os.urandom(64), b""):
        expected = abi_encode(["(address,uint256,uint256,uint256,bytes32,uint8,uint256,uint256)", "bytes"],
                              [r.as_struct(), signature])  # fmt: skip
        assert redeem_arguments(r, signature) == expected
