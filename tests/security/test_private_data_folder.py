"""Finding: secrets beside the data. The data folder was 0755 and ledger.db 0644 next to master.key; admin.key was
read whatever its mode. Now the folder is 0700 and every file the service writes 0600, whatever the umask."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.chain.keys import load_or_create_key
from backend.commands.cli import main
from backend.services.wiring import build_context
from backend.settings import ConfigError
from tests.factory import ServiceFactory, service_settings


@pytest.fixture
def lax_umask() -> Iterator[None]:
    """The common 022 umask while the test runs (and whatever the process had, back afterwards)."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def open_to_others(folder: Path) -> list[str]:
    """Everything in `folder` (the folder itself included) that anyone but the owner may read or enter."""
    paths = [folder, *folder.rglob("*")]
    return sorted(
        f"{p.relative_to(folder.parent)} {p.lstat().st_mode & 0o777:o}" for p in paths if p.lstat().st_mode & 0o077
    )


def test_service_keeps_its_data_folder_and_every_file_it_writes_owner_only(
    services: ServiceFactory, tmp_path: Path, lax_umask: None
) -> None:
    data_dir = services.folder(tmp_path / "svc")  # made 0755 under the 022 umask
    (data_dir / "deployment.json").chmod(0o600)  # copied here by the test, not written by the service
    ctx = build_context(service_settings(data_dir))
    try:
        written = {p.name for p in data_dir.iterdir()}
        assert {"ledger.db", "master.key", "admin-api-key", "bootstrap.lock"} <= written
        assert open_to_others(data_dir) == []
    finally:
        ctx.close()


def test_voucher_devnet_up_writes_nothing_others_can_read(tmp_path: Path, lax_umask: None) -> None:
    data_dir = tmp_path / "fresh"
    assert main(["devnet", "up", "--data-dir", str(data_dir), "--port", "0", "--automine"]) == 0
    try:
        assert {"admin.key", "deployment.json"} <= {p.name for p in data_dir.iterdir()}
        assert open_to_others(data_dir) == []
    finally:
        main(["devnet", "down", "--data-dir", str(data_dir)])


def test_service_refuses_an_admin_key_others_can_read(services: ServiceFactory, tmp_path: Path) -> None:
    data_dir = services.folder(tmp_path / "svc")
    (data_dir / "admin.key").chmod(0o644)
    key = data_dir / "admin.key"
    with pytest.raises(ConfigError, match=re.escape(f"{key} is readable by other users: run `chmod 600 {key}`")):
        build_context(service_settings(data_dir))


def test_voucher_refuses_an_admin_key_others_can_read_with_the_fix(
    tmp_path: Path, lax_umask: None, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "admin.key"
    address = load_or_create_key(key).address
    key.chmod(0o640)
    assert main(["deploy", "--rpc-url", "http://127.0.0.1:1", "--data-dir", str(tmp_path), "--print-admin"]) == 1
    printed = capsys.readouterr()
    assert printed.err == f"error: {key} is readable by other users: run `chmod 600 {key}`\n"
    assert address not in printed.out and key.read_text() not in printed.out + printed.err


def test_a_data_folder_shared_with_others_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: tightening it would break everyone else's files
    with pytest.raises(ConfigError, match="shared with other users"):
        load_or_create_key(shared / "admin.key")
    assert not (shared / "admin.key").exists()
