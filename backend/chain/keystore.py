"""Managed keys for enterprises, providers and the service's operator roles.

Keys are made with eth-account, encrypted at rest with AES-256-GCM under the master key (bound to their
address), and decrypted once per process into memory: decryption is cheap (no KDF: the master key is
already 32 random bytes) and never happens per request. Callers get signatures, never keys. Anything
that implements `Signer` (a KMS, Web3Signer) can take this class's place.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol

import coincurve
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from backend.chain import signing
from backend.errors import NotFound
from backend.models import ManagedKey


class Signer(Protocol):
    def create(self, purpose: str) -> str: ...
    def load(self, address: str) -> None: ...
    def sign_transaction(self, address: str, tx: dict[str, Any]) -> tuple[bytes, str]: ...
    def sign_hash(self, address: str, digest: bytes) -> bytes: ...


class EncryptedKeyStore:
    def __init__(self, engine: Engine, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._engine = engine
        self._aead = AESGCM(master_key)
        self._cache: dict[str, LocalAccount] = {}
        self._secp_keys: dict[str, coincurve.PrivateKey] = {}  # the same keys, ready for libsecp256k1
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EncryptedKeyStore({len(self._cache)} keys loaded)"

    def _seal(self, account: LocalAccount) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, bytes(account.key), account.address.encode())

    def _open(self, address: str, blob: bytes) -> LocalAccount:
        key = self._aead.decrypt(blob[:12], blob[12:], address.encode())
        account: LocalAccount = Account.from_key(key)
        if account.address != address:
            raise ValueError(f"stored key does not match {address}")
        return account

    def create(self, purpose: str) -> str:
        account: LocalAccount = Account.create()
        with Session(self._engine) as session:
            session.add(ManagedKey(address=account.address, ciphertext=self._seal(account), purpose=purpose))
            session.commit()
        with self._lock:
            self._cache[account.address] = account
        return str(account.address)

    def adopt(self, account: LocalAccount) -> None:
        """Uses a key held elsewhere (the deployer's key file) for signing, without storing it here."""
        with self._lock:
            self._cache[account.address] = account

    def addresses(self) -> list[str]:
        """Every stored key's address (retired ones included: the caller knows which are retired)."""
        with Session(self._engine) as session:
            return list(session.exec(select(ManagedKey.address)).all())

    def find(self, purpose: str) -> str | None:
        with Session(self._engine) as session:
            row = session.exec(select(ManagedKey).where(ManagedKey.purpose == purpose)).first()
            return row.address if row else None

    def _account(self, address: str) -> LocalAccount:
        account = self._cache.get(address)
        if account is not None:
            return account
        with Session(self._engine) as session:
            row = session.get(ManagedKey, address)
        if row is None:
            raise NotFound("managed key", address)
        account = self._open(address, row.ciphertext)
        with self._lock:
            self._cache[address] = account
        return account

    def loaded(self, address: str) -> bool:
        return address in self._cache

    def load(self, address: str) -> None:
        """Decrypts `address`'s key now, so signing inside a database transaction needs no second one."""
        self._account(address)

    def sign_transaction(self, address: str, tx: dict[str, Any]) -> tuple[bytes, str]:
        """A legacy transaction (`to`, `data`, `gas`, `gasPrice`, `nonce`, `chainId`, `value`), signed."""
        return signing.sign_legacy(self._secp(address), nonce=tx["nonce"], gas_price=tx["gasPrice"], gas=tx["gas"],
                                   to=tx["to"], value=tx["value"], data=tx["data"], chain_id=tx["chainId"])  # fmt: skip

    def sign_hash(self, address: str, digest: bytes) -> bytes:
        return signing.sign_digest(self._secp(address), digest)

    def _secp(self, address: str) -> coincurve.PrivateKey:
        key = self._secp_keys.get(address)
        if key is None:
            key = coincurve.PrivateKey(bytes(self._account(address).key))
            self._secp_keys[address] = key
        return key
