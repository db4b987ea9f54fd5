"""One validated settings object, read from the environment (prefix VOUCHER_) and the command line.

It refuses insecure or inconsistent configuration at start, with a message that says what to do.
"""

from __future__ import annotations

import os
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.paths import DEFAULT_DATA_DIR

MASTER_KEY_FILE = "master.key"
NODE_TOKEN_FILE = "node-token"


class ConfigError(Exception):
    """The configuration cannot be used; the message says how to fix it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOUCHER_", extra="ignore", populate_by_name=True)

    data_dir: Path = DEFAULT_DATA_DIR
    # SQLite in the data folder unless DATABASE_URL (no prefix, the usual name) points elsewhere.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    host: str = "127.0.0.1"
    port: int = 8000
    # 32 random bytes, hex; encrypts managed keys at rest. Generated into D/master.key when not given.
    master_key: SecretStr | None = None
    # How long a request waits for its transaction's receipt before answering 202 and tracking it.
    receipt_wait_s: float = 15.0
    # A request holding an Idempotency-Key this long without finishing is taken to have died with its
    # process (a crash, a kill): a retry with the same key takes over and finishes it. Above receipt_wait_s.
    idempotency_lease_s: float = Field(default=60.0, gt=0)
    # A stored transaction without a receipt this long is examined: re-sent, or given up (its nonce filled).
    stuck_after_s: float = Field(default=30.0, gt=0)
    # Consents expire this long after the enterprise confirms.
    consent_ttl_s: int = 3600
    # A claim the enterprise has neither confirmed nor refused this long is void (status "expired"): a pending
    # claim must not hold an invoice forever.
    claim_ttl_s: int = Field(default=3 * 86400, gt=0)
    # Requests per minute per API key on the claim and application endpoints; 0 disables the limit.
    rate_limit_per_minute: int = 0
    max_body_bytes: int = 64 * 1024
    # The devnet is started by `voucher serve` when this is true and no RPC URL is set.
    rpc_url: str | None = None
    # Bearer token for the node's writes and allowlist (the devnet's D/node-token when not given).
    rpc_token: SecretStr | None = None
    start_devnet: bool = True
    # Competition report: flag a market whose HHI (0-10,000) or top-3 share (a fraction) is above these.
    hhi_threshold: int = Field(default=2500, gt=0, le=10_000)
    top3_share_threshold: Decimal = Field(default=Decimal("0.8"), gt=0, le=1)

    @field_validator("master_key")
    @classmethod
    def _strong_master_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value().removeprefix("0x")
        try:
            key = bytes.fromhex(raw)
        except ValueError:
            raise ValueError("VOUCHER_MASTER_KEY must be 64 hex characters (32 random bytes)") from None
        if len(key) != 32 or len(set(key)) < 8:
            raise ValueError("VOUCHER_MASTER_KEY must be 32 random bytes (64 hex characters), not a weak value")
        return value

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'ledger.db').resolve()}"

    def node_token(self) -> str | None:
        if self.rpc_token is not None:
            return self.rpc_token.get_secret_value()
        path = self.data_dir / NODE_TOKEN_FILE
        return path.read_text().strip() if path.is_file() else None

    def master_key_bytes(self) -> bytes:
        """The key that encrypts managed keys: given, or generated once into D/master.key (mode 0600)."""
        if self.master_key is not None:
            return bytes.fromhex(self.master_key.get_secret_value().removeprefix("0x"))
        path = self.data_dir / MASTER_KEY_FILE
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # build_context tightens an older folder
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if path.stat().st_mode & 0o077:
                raise ConfigError(f"{path} is readable by other users: run `chmod 600 {path}`") from None
            return bytes.fromhex(path.read_text().strip())
        key = os.urandom(32)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
