"""Backup and restore of a service's data folder: the database, the devnet's chain state and the files that give
them meaning (deployment record, deployer key, master key), in one archive with a manifest of sha256 hashes.

The chain is captured first and the database second, so the database is never behind the chain: whatever signed
transactions it holds that the restored chain lacks, the monitor sends again (each is stored before broadcast).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import platform
import sqlite3
import tarfile
import tempfile
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Integer, func, inspect, select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, col

from backend.chain import devnet
from backend.chain.deploy import ADMIN_KEY_FILE, DEPLOYMENT_FILE, Deployment
from backend.db import init_db, make_engine
from backend.models import ChainTx
from backend.settings import MASTER_KEY_FILE, Settings

FORMAT = 1
MANIFEST = "manifest.json"
STATE_FILE = "anvil-state.json"
SQLITE_FILE, TABLES_FILE = "ledger.db", "tables.jsonl"
ADMIN_API_KEY_FILE = "admin-api-key"
REQUIRED = (DEPLOYMENT_FILE, ADMIN_KEY_FILE, MASTER_KEY_FILE)
KNOWN = {*REQUIRED, ADMIN_API_KEY_FILE, STATE_FILE, SQLITE_FILE, TABLES_FILE}


class BackupError(Exception):
    """The backup or restore cannot go ahead; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------------- backup
def backup(data_dir: Path, out: Path) -> dict[str, Any]:
    """Writes the archive to `out` (mode 0600) and returns its manifest. The database is DATABASE_URL's, if set."""
    settings = Settings(data_dir=data_dir)
    if out.exists():
        raise BackupError(f"{out} already exists: choose another --out (a backup never overwrites a file)")
    missing = [n for n in (DEPLOYMENT_FILE, ADMIN_KEY_FILE) if not (data_dir / n).is_file()]
    if missing:
        raise BackupError(f"{data_dir} has no {', '.join(missing)}: is it the service's data folder?")
    deployment = Deployment.load(data_dir / DEPLOYMENT_FILE)
    members: dict[str, tuple[bytes, int]] = {}
    for name in (DEPLOYMENT_FILE, ADMIN_KEY_FILE, ADMIN_API_KEY_FILE):
        if (data_dir / name).is_file():
            members[name] = _read(data_dir / name)
    members[MASTER_KEY_FILE] = _master_key(settings)
    # The chain first: the database copy, taken after it, can only be ahead of it.
    state, block, node = _chain_state(data_dir)
    members[STATE_FILE] = (state, _mode(data_dir / STATE_FILE, 0o600))
    url = settings.db_url
    if url.startswith("sqlite"):
        kind = "sqlite"
        members[SQLITE_FILE] = (_sqlite_copy(Path(url.split("///", 1)[1])), _mode(data_dir / SQLITE_FILE, 0o600))
    else:
        kind = "postgresql"
        members[TABLES_FILE] = (_dump_tables(make_engine(url)), 0o600)
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "versions": {
            "ledger": _version(),
            "python": platform.python_version(),
            "node": node,
            "sqlite": sqlite3.sqlite_version,
        },
        "chain_id": deployment.chain_id,
        "contract": deployment.voucher.address,
        "block_number": block,
        "database": kind,
        "members": {n: {"sha256": _sha256(b), "mode": m, "size": len(b)} for n, (b, m) in members.items()},
    }
    _write_archive(out, members, manifest)
    return manifest


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mode & 0o777


def _mode(path: Path, default: int) -> int:
    return path.stat().st_mode & 0o777 if path.is_file() else default


def _master_key(settings: Settings) -> tuple[bytes, int]:
    path = settings.data_dir / MASTER_KEY_FILE
    if path.is_file():
        return _read(path)
    if settings.master_key is not None:  # given by the environment: the restored folder gets it as a file
        return settings.master_key.get_secret_value().removeprefix("0x").encode(), 0o600
    raise BackupError(f"no {path} and no VOUCHER_MASTER_KEY: without it the managed keys cannot be decrypted")


def _chain_state(data_dir: Path) -> tuple[bytes, int, str]:
    """The devnet's state as anvil's state file holds it, its block number, and the node's version."""
    info = devnet.status(data_dir)
    if info is not None:
        try:
            node = str(_rpc(info.rpc_url, "web3_clientVersion"))
            raw = gzip.decompress(bytes.fromhex(str(_rpc(info.rpc_url, "anvil_dumpState"))[2:]))
        except (httpx.HTTPError, KeyError, ValueError, OSError) as exc:
            raise BackupError(f"the devnet at {info.rpc_url} did not give its state ({type(exc).__name__})") from None
    elif (data_dir / STATE_FILE).is_file():
        node, raw = "unknown (devnet stopped: its last state file)", (data_dir / STATE_FILE).read_bytes()
    else:
        raise BackupError(
            f"no devnet runs for {data_dir} and it has no {STATE_FILE}: start it with `voucher devnet up`"
        )
    number = json.loads(raw).get("best_block_number", 0)
    return raw, int(number, 16) if isinstance(number, str) else int(number), node


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


def _write_archive(out: Path, members: dict[str, tuple[bytes, int]], manifest: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        files = {MANIFEST: json.dumps(manifest, indent=1).encode()} | {n: b for n, (b, _) in members.items()}
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
            for name, data in files.items():
                entry = tarfile.TarInfo(name)
                entry.size, entry.mode, entry.mtime = len(data), 0o600, int(datetime.now(UTC).timestamp())
                tar.addfile(entry, io.BytesIO(data))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _version() -> str:
    try:
        return metadata.version("compute-voucher-ledger")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------------- restore
def restore(archive: Path, data_dir: Path, *, database_url: str | None = None) -> dict[str, Any]:
    """Unpacks a checked archive into an empty `data_dir` (and the database at `database_url`, if given)."""
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(f"{data_dir} is not empty: restore only into a new or empty folder")
    manifest, members = _read_archive(archive)
    target_url = database_url or f"sqlite:///{(data_dir / SQLITE_FILE).resolve()}"
    if manifest["database"] == "sqlite" and database_url:
        raise BackupError(
            f"this archive holds a SQLite database, restored as {data_dir / SQLITE_FILE}: unset DATABASE_URL"
        )
    if not target_url.startswith("sqlite"):
        _refuse_non_empty_database(target_url)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, data in members.items():
        if name != TABLES_FILE:
            _write(data_dir / name, data, int(manifest["members"][name]["mode"]))
    if manifest["database"] == "postgresql":
        _load_tables(make_engine(target_url), members[TABLES_FILE])
    _resend_after(make_engine(target_url), int(manifest["block_number"]))
    return dict(manifest)


def _read_archive(archive: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and every member, each checked against its sha256; anything else is refused."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            files = {m.name: m for m in tar.getmembers()}
            if MANIFEST not in files or not all(m.isfile() for m in files.values()):
                raise BackupError(f"{archive} is not a ledger backup (no manifest, or unexpected entries)")
            contents = {name: _extract(tar, m) for name, m in files.items()}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{archive} cannot be read as a backup archive ({type(exc).__name__})") from None
    try:
        manifest = json.loads(contents.pop(MANIFEST))
        listed = manifest["members"]
        fmt = manifest["format"]
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"{archive} has a damaged manifest") from None
    if fmt != FORMAT:
        raise BackupError(f"{archive} is in backup format {fmt}; this version reads format {FORMAT}")
    if set(listed) != set(contents) or not set(listed) <= KNOWN or not set(REQUIRED) <= set(listed):
        raise BackupError(f"{archive} does not hold the files its manifest lists: refusing a tampered archive")
    for name, data in contents.items():
        if _sha256(data) != listed[name]["sha256"]:
            raise BackupError(
                f"{archive}: {name} does not match its sha256 in the manifest: refusing a tampered archive"
            )
    return manifest, contents


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    assert f is not None  # regular files only, checked by the caller
    return f.read()


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others while written
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _refuse_non_empty_database(url: str) -> None:
    engine = make_engine(url)
    try:
        names = set(inspect(engine).get_table_names()) & set(SQLModel.metadata.tables)
        with engine.connect() as conn:
            tables = SQLModel.metadata.tables
            used = [n for n in sorted(names) if conn.execute(select(func.count()).select_from(tables[n])).scalar()]
    finally:
        engine.dispose()
    if used:
        raise BackupError(f"the target database already holds ledger data ({', '.join(used)}): use an empty one")


def _load_tables(engine: Engine, dump: bytes) -> None:
    tables = SQLModel.metadata.tables
    rows: dict[str, list[dict[str, Any]]] = {}
    for line in dump.decode().splitlines():
        if line:
            item = json.loads(line)
            table = tables[item["table"]]
            rows.setdefault(table.name, []).append({k: _from_json(table.c[k].type, v) for k, v in item["row"].items()})
    try:
        init_db(engine)
        _insert_all(engine, rows)
    finally:
        engine.dispose()


def _insert_all(engine: Engine, rows: dict[str, list[dict[str, Any]]]) -> None:
    tables = SQLModel.metadata.tables
    with engine.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:  # parents before children: foreign keys hold throughout
            if rows.get(table.name):
                conn.execute(table.insert(), rows[table.name])
        if engine.dialect.name == "postgresql":  # serial ids go on after the restored rows
            for name in (
                n for n, t in tables.items() if "id" in t.c and isinstance(t.c["id"].type, Integer) and rows.get(n)
            ):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), max(id)) FROM \"{name}\""))


def _from_json(kind: Any, value: Any) -> Any:
    """Back from JSON by the column's Python type (bytes were base64, times ISO 8601)."""
    try:  # a TypeDecorator (sqlmodel's UTC datetime) names its type on the type it wraps
        python_type = getattr(kind, "impl", kind).python_type
    except NotImplementedError:
        return value
    if value is None:
        return None
    if python_type is bytes:
        return base64.b64decode(value)
    if python_type is datetime:
        return datetime.fromisoformat(value)
    if python_type is date:
        return date.fromisoformat(value)
    return value


def _resend_after(engine: Engine, block: int) -> None:
    """Transactions the database saw mined after the chain was captured are not on the restored chain: marked
    unresolved, the monitor sends them again (same signature, same nonce) and completes their records."""
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(
            update(ChainTx).where(col(ChainTx.block_number) > block).values(status="signed", block_number=None)
        )
    engine.dispose()
