"""Backup of a service's data folder: the database, the devnet's chain state and the files that give them meaning
(deployment record, deployer key, master key), in one archive with a manifest of sha256 hashes, encrypted under
the operator's passphrase (backup_crypto). `backend.commands.restore` brings it back.

The chain is captured first and the database second, so the database is never behind the chain: whatever signed
transactions it holds that the restored chain lacks, the monitor sends again (each is stored before broadcast).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import platform
import sqlite3
import tarfile
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from backend import version
from backend.chain import devnet
from backend.chain.deploy import ADMIN_KEY_FILE, DEPLOYMENT_FILE, Deployment
from backend.chain.node import statefile
from backend.commands.backup_crypto import BackupError, check_strength, seal
from backend.db import make_engine
from backend.settings import MASTER_KEY_FILE, Settings

FORMAT = 2  # 2: encrypted; file modes are no longer recorded (a restore writes every file 0600)
MANIFEST = "manifest.json"
STATE_FILE = "anvil-state.json"
SQLITE_FILE, TABLES_FILE = "ledger.db", "tables.jsonl"
ADMIN_API_KEY_FILE = "admin-api-key"
REQUIRED = (DEPLOYMENT_FILE, ADMIN_KEY_FILE, MASTER_KEY_FILE)
KNOWN = {*REQUIRED, ADMIN_API_KEY_FILE, STATE_FILE, SQLITE_FILE, TABLES_FILE}


# ---------------------------------------------------------------------------------------------------- backup
def backup(data_dir: Path, out: Path, *, passphrase: bytes) -> dict[str, Any]:
    """Writes the archive to `out` (mode 0600), encrypted under `passphrase`, and returns its manifest. The database
    is DATABASE_URL's, if set."""
    check_strength(passphrase)
    settings = Settings(data_dir=data_dir)
    if out.exists():
        raise BackupError(f"{out} already exists: choose another --out (a backup never overwrites a file)")
    missing = [n for n in (DEPLOYMENT_FILE, ADMIN_KEY_FILE) if not (data_dir / n).is_file()]
    if missing:
        raise BackupError(f"{data_dir} has no {', '.join(missing)}: is it the service's data folder?")
    deployment = Deployment.load(data_dir / DEPLOYMENT_FILE)
    members: dict[str, bytes] = {}
    for name in (DEPLOYMENT_FILE, ADMIN_KEY_FILE, ADMIN_API_KEY_FILE):
        if (data_dir / name).is_file():
            members[name] = (data_dir / name).read_bytes()
    members[MASTER_KEY_FILE] = _master_key(settings)
    # The chain first: the database copy, taken after it, can only be ahead of it.
    state, block, node = _chain_state(data_dir)
    members[STATE_FILE] = state
    url = settings.db_url
    if url.startswith("sqlite"):
        kind = "sqlite"
        members[SQLITE_FILE] = _sqlite_copy(Path(url.split("///", 1)[1]))
    else:
        kind = "postgresql"
        members[TABLES_FILE] = _dump_tables(make_engine(url))
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "versions": {
            "ledger": version(),
            "python": platform.python_version(),
            "node": node,
            "sqlite": sqlite3.sqlite_version,
        },
        "chain_id": deployment.chain_id,
        "contract": deployment.voucher.address,
        "block_number": block,
        "database": kind,
        "members": {n: {"sha256": sha256(b), "size": len(b)} for n, b in members.items()},
    }
    _write_archive(out, members, manifest, passphrase)
    return manifest


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _master_key(settings: Settings) -> bytes:
    path = settings.data_dir / MASTER_KEY_FILE
    if path.is_file():
        return path.read_bytes()
    if settings.master_key is not None:  # given by the environment: the restored folder gets it as a file
        return settings.master_key.get_secret_value().removeprefix("0x").encode()
    raise BackupError(f"no {path} and no VOUCHER_MASTER_KEY: without it the managed keys cannot be decrypted")


def _chain_state(data_dir: Path) -> tuple[bytes, int, str]:
    """The devnet's state as a state file holds it (a fresh dump when it runs), its block number, and the node's
    version. Restored as `anvil-state.json`, which `voucher devnet up` loads when the folder has no newer dump."""
    info = devnet.status(data_dir)
    if info is not None:
        try:
            node = str(_rpc(info.rpc_url, "web3_clientVersion"))
            devnet.dump_now(data_dir)
        except (httpx.HTTPError, KeyError, ValueError, OSError, devnet.DevnetError) as exc:
            raise BackupError(f"the devnet at {info.rpc_url} did not give its state ({exc})") from None
    else:
        node = "unknown (devnet stopped: its last state file)"
    dump, _ = statefile.choose(data_dir / "node", legacy_dir=data_dir)
    if dump is None:
        raise BackupError(f"{data_dir} has no good state dump of its devnet: start it with `voucher devnet up`")
    return json.dumps(statefile.read(dump.path)).encode(), dump.head, node


def _rpc(url: str, method: str) -> Any:
    body = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": []}, timeout=60).json()
    return body["result"]


def _sqlite_copy(path: Path) -> bytes:
    """A consistent copy through SQLite's online backup API (safe while the service writes; WAL included)."""
    if not path.is_file():
        raise BackupError(f"the database {path} does not exist")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / SQLITE_FILE
        src, dst = sqlite3.connect(f"file:{path}?mode=ro", uri=True), sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        return copy.read_bytes()


def _dump_tables(engine: Engine) -> bytes:
    """Every table's rows as JSON lines, read in one REPEATABLE READ transaction: one consistent snapshot."""
    try:
        lines = _rows_as_json(engine)
    finally:
        engine.dispose()
    return ("\n".join(lines) + "\n").encode()


def _rows_as_json(engine: Engine) -> list[str]:
    lines = []
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        for table in SQLModel.metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                values = {k: _to_json(v) for k, v in row.items()}
                lines.append(json.dumps({"table": table.name, "row": values}, separators=(",", ":")))
    return lines


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _write_archive(out: Path, members: dict[str, bytes], manifest: dict[str, Any], passphrase: bytes) -> None:
    files = {MANIFEST: json.dumps(manifest, indent=1).encode()} | members
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        for name, data in files.items():
            entry = tarfile.TarInfo(name)
            entry.size, entry.mode, entry.mtime = len(data), 0o600, int(datetime.now(UTC).timestamp())
            tar.addfile(entry, io.BytesIO(data))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            seal(packed.getvalue(), passphrase, f)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
