"""Restore of a backup into a new data folder: the archive decrypted and checked whole before anything is written,
then every file written owner-only (0600, the folder 0700). Nothing in the archive chooses a file's mode or where
it goes: only the known file names, each a plain name inside the target folder, are accepted."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, func, inspect, select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, col

from backend.commands.backup import FORMAT, KNOWN, MANIFEST, REQUIRED, SQLITE_FILE, TABLES_FILE, sha256
from backend.commands.backup_crypto import BackupError, unseal
from backend.db import init_db, make_engine
from backend.models import ChainTx


def restore(archive: Path, data_dir: Path, *, passphrase: bytes, database_url: str | None = None) -> dict[str, Any]:
    """Unpacks a checked archive into an empty `data_dir` (and the database at `database_url`, if given)."""
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(f"{data_dir} is not empty: restore only into a new or empty folder")
    manifest, members = _read_archive(archive, passphrase)
    target_url = database_url or f"sqlite:///{(data_dir / SQLITE_FILE).resolve()}"
    if manifest["database"] == "sqlite" and database_url:
        raise BackupError(
            f"this archive holds a SQLite database, restored as {data_dir / SQLITE_FILE}: unset DATABASE_URL"
        )
    if not target_url.startswith("sqlite"):
        _refuse_non_empty_database(target_url)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_dir.chmod(0o700)  # an empty folder made beforehand may have been open to others
    for name, data in members.items():
        if name != TABLES_FILE:
            _write(data_dir, name, data)
    if manifest["database"] == "postgresql":
        _load_tables(make_engine(target_url), members[TABLES_FILE])
    _resend_after(make_engine(target_url), int(manifest["block_number"]))
    return dict(manifest)


def _read_archive(archive: Path, passphrase: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and every member, each checked against its sha256; anything else is refused."""
    try:
        with open(archive, "rb") as sealed:
            packed = unseal(sealed, passphrase, archive)
        with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
            entries = tar.getmembers()
            files = {m.name: m for m in entries}
            if MANIFEST not in files or len(files) != len(entries) or not all(m.isfile() for m in entries):
                raise BackupError(f"{archive} is not a ledger backup (no manifest, or unexpected entries)")
            if unsafe := sorted(name for name in files if not _plain_name(name)):
                raise BackupError(f"{archive} names a file outside the data folder ({unsafe[0]!r}): refusing it")
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
        if sha256(data) != listed[name]["sha256"]:
            raise BackupError(
                f"{archive}: {name} does not match its sha256 in the manifest: refusing a tampered archive"
            )
    return manifest, contents


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    assert f is not None  # regular files only, checked by the caller
    return f.read()


def _plain_name(name: str) -> bool:
    """A bare file name: no folder, no `..`, not absolute, nothing a file system could read as a path."""
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def _write(data_dir: Path, name: str, data: bytes) -> None:
    """`data` as `data_dir/name`, owner-only whatever the archive said; never through a link, never elsewhere."""
    path = data_dir / name
    if not _plain_name(name) or path.resolve().parent != data_dir.resolve():
        raise BackupError(f"refusing to write {name!r}: it is not a file inside {data_dir}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # whatever the process umask
    with os.fdopen(fd, "wb") as f:
        f.write(data)


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
