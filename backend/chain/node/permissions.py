"""What the gateway lets through, kept in the data folder: the node token, the account allowlist (managed with
Besu's `perm_*` methods) and the ledger contracts transactions may call. Files are owner-only and replaced
atomically, so a crash leaves the old list or the new one, never half of one."""

from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path

import rlp
from eth_utils.crypto import keccak

TOKEN_FILE = "node-token"


def write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_or_create_token(data_dir: Path) -> str:
    """The bearer token that writes and `perm_*` calls must carry (Besu: RPC authentication)."""
    path = data_dir / TOKEN_FILE
    if path.is_file():
        if path.stat().st_mode & 0o077:
            raise PermissionError(f"{path} is readable by other users: run `chmod 600 {path}`")
        return path.read_text().strip()
    token = secrets.token_hex(32)
    write_private(path, token + "\n")
    return token


def read_token(data_dir: Path) -> str | None:
    path = data_dir / TOKEN_FILE
    return path.read_text().strip() if path.is_file() else None


def token_matches(expected: str, authorization: str | None) -> bool:
    if not authorization or not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization[7:].strip().encode(), expected.encode())


def created_address(sender: str, nonce: int) -> str:
    """The address a contract creation by `sender` with `nonce` deploys to."""
    return "0x" + keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:].hex()


class Permissions:
    """The allowlist of senders and the contracts they may call, persisted in `path`."""

    def __init__(self, path: Path, *, admin: str) -> None:
        self.path = path
        self.admin = admin.lower()
        self.accounts: set[str] = {self.admin}
        self.contracts: set[str] = set()
        if path.is_file():
            raw = json.loads(path.read_text())
            self.accounts |= {a.lower() for a in raw.get("accounts", [])}
            self.contracts |= {c.lower() for c in raw.get("contracts", [])}
        deployment = path.parent.parent / "deployment.json"  # a restored folder: its ledger is the one recorded
        if deployment.is_file():
            for record in json.loads(deployment.read_text()).get("contracts", {}).values():
                self.contracts.add(str(record["address"]).lower())
        self._save()

    def _save(self) -> None:
        body = {"accounts": sorted(self.accounts), "contracts": sorted(self.contracts)}
        write_private(self.path, json.dumps(body, indent=1) + "\n")

    def add_accounts(self, accounts: list[str]) -> None:
        self.accounts |= {a.lower() for a in accounts}
        self._save()

    def remove_accounts(self, accounts: list[str]) -> list[str]:
        """Removes `accounts`; the admin stays (it deploys and grants roles). Returns those not on the list."""
        wanted = {a.lower() for a in accounts}
        missing = sorted(wanted - self.accounts)
        self.accounts -= wanted - {self.admin}
        self._save()
        return missing

    def add_contract(self, address: str) -> None:
        if address.lower() not in self.contracts:
            self.contracts.add(address.lower())
            self._save()
