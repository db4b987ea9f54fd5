"""Finding: backups in clear. An archive held master.key, admin.key and the admin API key as plain tar.gz members:
whoever could read the backup could read every managed key. Now it is encrypted under the operator's passphrase
(never a command-line value), and a changed byte or a wrong passphrase is refused before anything is written."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.commands.backup_crypto import HEADER_SIZE, PASSPHRASE_ENV
from backend.commands.cli import main
from backend.services.wiring import build_context
from tests.factory import ServiceFactory, service_settings

PASSPHRASE = "a long passphrase, only for tests"
SECRETS = ("master.key", "admin.key", "admin-api-key")


@dataclass
class Backup:
    data_dir: Path
    archive: Path
    passphrase_file: Path


@pytest.fixture(autouse=True)
def umask_kept() -> Iterator[None]:
    """`voucher backup/restore` set the process umask to 077: the rest of the session keeps its own."""
    before = os.umask(0o022)
    os.umask(before)
    try:
        yield
    finally:
        os.umask(before)


def secret_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def made(services: ServiceFactory, tmp_path_factory: pytest.TempPathFactory) -> Backup:
    """A service folder on the session devnet (master key, admin API key, database written by the service) and
    its backup, encrypted with the passphrase from a file."""
    folder = tmp_path_factory.mktemp("encrypted-backup")
    data_dir = services.folder(folder / "data")
    build_context(service_settings(data_dir)).close()
    # The chain state as a stopped devnet leaves it: the backup takes the file as it is.
    blocks = [{"header": {"number": hex(n)}, "transactions": []} for n in range(0x2A + 1)]
    state = {"best_block_number": 0x2A, "accounts": {}, "blocks": blocks, "transactions": []}
    (data_dir / "anvil-state.json").write_text(json.dumps(state))
    passphrase_file = secret_file(folder / "passphrase", PASSPHRASE)
    archive = folder / "ledger.backup"
    before = os.umask(0o022)
    try:
        assert main(["backup", "--data-dir", str(data_dir), "--out", str(archive),
                     "--passphrase-file", str(passphrase_file)]) == 0  # fmt: skip
    finally:
        os.umask(before)
    return Backup(data_dir, archive, passphrase_file)


def restore(archive: Path, target: Path, *flags: str) -> int:
    return main(["restore", "--from", str(archive), "--data-dir", str(target), *flags])


def test_backup_holds_no_key_material_in_clear(made: Backup) -> None:
    sealed = made.archive.read_bytes()
    with pytest.raises(tarfile.ReadError), tarfile.open(fileobj=io.BytesIO(sealed)):
        pass
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(sealed)
    for name in SECRETS:
        text = (made.data_dir / name).read_text().strip()
        assert text.encode() not in sealed, name
        if name != "admin-api-key":  # the two keys are hex: not their raw bytes either
            assert bytes.fromhex(text.removeprefix("0x")) not in sealed, name
    assert PASSPHRASE.encode() not in sealed


def test_restore_with_the_passphrase_brings_back_every_file(
    made: Backup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)  # the environment variable instead of the file
    target = tmp_path / "restored"
    assert restore(made.archive, target) == 0
    for name in (*SECRETS, "deployment.json", "anvil-state.json"):
        assert (target / name).read_bytes() == (made.data_dir / name).read_bytes(), name
    printed = capsys.readouterr()
    assert PASSPHRASE not in printed.out + printed.err


def test_backup_refuses_to_run_without_a_passphrase(
    made: Backup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    out = tmp_path / "clear.backup"
    assert main(["backup", "--data-dir", str(made.data_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: backups are encrypted: set {PASSPHRASE_ENV} or give --passphrase-file FILE "
                   "(a file only you can read)\n")  # fmt: skip
    assert not out.exists() and not list(tmp_path.iterdir())


def test_backup_refuses_a_short_passphrase(
    made: Backup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "hunter2")
    out = tmp_path / "weak.backup"
    assert main(["backup", "--data-dir", str(made.data_dir), "--out", str(out)]) == 1
    assert "at least 12 characters" in capsys.readouterr().err
    assert not out.exists()


def test_a_passphrase_file_others_can_read_is_refused(
    made: Backup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loose = secret_file(tmp_path / "passphrase", PASSPHRASE)
    loose.chmod(0o644)
    assert restore(made.archive, tmp_path / "restored", "--passphrase-file", str(loose)) == 1
    assert capsys.readouterr().err == f"error: {loose} is readable by other users: run `chmod 600 {loose}`\n"
    assert not (tmp_path / "restored").exists()


def test_restore_refuses_a_wrong_passphrase(made: Backup, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = secret_file(tmp_path / "wrong", PASSPHRASE + "!")
    assert restore(made.archive, tmp_path / "restored", "--passphrase-file", str(wrong)) == 1
    err = capsys.readouterr().err
    assert err == f"error: the passphrase does not open {made.archive} (or its header was changed)\n"
    assert not (tmp_path / "restored").exists()


@pytest.mark.parametrize(
    "change",
    ["first chunk byte", "last byte", "cut short", "bytes appended", "salt byte"],
)
def test_restore_refuses_a_backup_with_a_changed_byte(
    made: Backup, tmp_path: Path, change: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(made.archive.read_bytes())
    if change == "first chunk byte":
        data[HEADER_SIZE + 100] ^= 0x01
    elif change == "last byte":
        data[-1] ^= 0x80
    elif change == "cut short":
        del data[-20:]
    elif change == "bytes appended":
        data += b"\x00" * 32
    else:
        data[len(b"CVLBACKUP") + 4] ^= 0x01
    bad = tmp_path / "bad.backup"
    bad.write_bytes(bytes(data))
    target = tmp_path / "restored"
    assert restore(bad, target, "--passphrase-file", str(made.passphrase_file)) == 1
    err = capsys.readouterr().err
    expected = "(or its header was changed)" if change == "salt byte" else "was changed or damaged after it was written"
    assert err.count("\n") == 1 and expected in err and str(bad) in err
    assert not target.exists()


def test_restore_refuses_an_unencrypted_backup(
    made: Backup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "old.tar.gz"
    with tarfile.open(plain, "w:gz") as tar:
        tar.add(made.data_dir / "master.key", arcname="master.key")
    assert restore(plain, tmp_path / "restored", "--passphrase-file", str(made.passphrase_file)) == 1
    assert "unencrypted backup from an older version: refusing it" in capsys.readouterr().err
    assert not (tmp_path / "restored").exists()
