"""Finding: restore took file modes from the archive (a forged manifest wrote admin.key 0666). Now nothing in an
archive chooses a mode or a place: every restored file is 0600, the folder 0700, and a name that leads out of
the folder (or a link, or a name given twice) refuses the whole archive before anything is written."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.commands.backup_crypto import PASSPHRASE_ENV, seal
from backend.commands.cli import main

PASSPHRASE = "the operator's own passphrase"
FILES = {
    "deployment.json": b'{"chain_id": 727001}',
    "admin.key": b"11" * 32,
    "master.key": b"22" * 32,
    "admin-api-key": b"cvl_forged\n",
}


@pytest.fixture(autouse=True)
def passphrase(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forged with the right passphrase: the worst case, someone who holds it. The umask `voucher` sets is undone."""
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def forged(
    target: Path, files: dict[str, bytes], *, links: dict[str, str] | None = None, twice: dict[str, bytes] | None = None
) -> Path:
    """An archive whose manifest and tar entries both ask for mode 0666, sealed with the operator's passphrase;
    `links` adds symbolic links, `twice` a second entry of the same name after the first."""
    manifest = {
        "format": 2,
        "created_at": "2026-01-01T00:00:00+00:00",
        "chain_id": 727001,
        "contract": "0x" + "12" * 20,
        "block_number": 0,
        "database": "sqlite",
        "members": {
            n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b), "mode": 0o666} for n, b in files.items()
        },
    }
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        entries = [("manifest.json", json.dumps(manifest).encode()), *files.items(), *(twice or {}).items()]
        for name, data in entries:
            entry = tarfile.TarInfo(name)
            entry.size, entry.mode = len(data), 0o666
            tar.addfile(entry, io.BytesIO(data))
        for name, points_to in (links or {}).items():
            link = tarfile.TarInfo(name)
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, points_to, 0o777
            tar.addfile(link)
    with target.open("wb") as f:
        seal(packed.getvalue(), PASSPHRASE.encode(), f)
    return target


def restore(archive: Path, target: Path) -> int:
    return main(["restore", "--from", str(archive), "--data-dir", str(target)])


def test_restore_writes_every_file_owner_only_whatever_the_archive_says(tmp_path: Path) -> None:
    archive = forged(tmp_path / "forged.backup", FILES)
    target = tmp_path / "restored"
    target.mkdir(mode=0o755)  # an empty folder made beforehand, open to others
    assert restore(archive, target) == 0
    assert target.stat().st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in target.iterdir()}
    assert set(FILES) <= set(modes) and set(modes.values()) == {0o600}, modes
    assert (target / "admin.key").read_bytes() == FILES["admin.key"]


@pytest.mark.parametrize("name", ["../admin.key", "/tmp/cvl-restore-escape.key", "sub/admin.key", ".."])
def test_restore_refuses_a_name_outside_the_data_folder(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = forged(tmp_path / "forged.backup", {**FILES, name: b"33" * 32})
    target = tmp_path / "data" / "restored"
    assert restore(archive, target) == 1
    assert f"names a file outside the data folder ({name!r})" in capsys.readouterr().err
    assert not target.exists() and not (tmp_path / "data" / "admin.key").exists()
    assert not Path("/tmp/cvl-restore-escape.key").exists()


def test_restore_refuses_a_link(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = forged(tmp_path / "forged.backup", FILES, links={"anvil-state.json": "/etc/passwd"})
    assert restore(archive, tmp_path / "restored") == 1
    assert "not a ledger backup (no manifest, or unexpected entries)" in capsys.readouterr().err
    assert not (tmp_path / "restored").exists()


def test_restore_refuses_a_file_given_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = forged(tmp_path / "forged.backup", FILES, twice={"admin.key": b"44" * 32})  # the one a naive reader keeps
    assert restore(archive, tmp_path / "restored") == 1
    assert "unexpected entries" in capsys.readouterr().err
    assert not (tmp_path / "restored").exists()
