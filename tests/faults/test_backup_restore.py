"""Backup and restore through the `voucher` command: a service on its own devnet is backed up, its devnet
stopped, and everything comes back in a fresh folder on another devnet: contract, balances, keys, API keys."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backend.chain import devnet
from backend.chain.deploy import Deployment, ensure_deployed
from backend.commands.backup_crypto import PASSPHRASE_ENV, seal, unseal
from backend.commands.cli import main
from tests.api.support import Api, Service
from tests.factory import backends, pg_database, run_service, service_settings

SECRET_FILES = ("master.key", "admin.key", "admin-api-key")
PASSPHRASE = "correct horse battery staple"


@dataclass
class Original:
    archive: Path
    data_dir: Path
    contract: str
    balances: dict[tuple[int, int], int]  # (enterprise id, programme id) -> fen
    enterprises: list[dict[str, Any]]
    provider: dict[str, Any]
    programme_id: int
    keys: dict[str, str]  # API keys made before the backup: enterprise ids as str, and "provider"
    database: str


@pytest.fixture(scope="module")
def pg_databases() -> Iterator[ExitStack]:
    """Drops the PostgreSQL databases made for this module when it is done."""
    with ExitStack() as stack:
        yield stack


def fresh_database(kind: str, made: ExitStack) -> str | None:
    """A new empty database: None means SQLite in the data folder (the default)."""
    return None if kind == "sqlite" else made.enter_context(pg_database("cvl_backup"))


def serve(data_dir: Path, database_url: str | None) -> Generator[Service, None, None]:
    return run_service(service_settings(data_dir, database_url=database_url))


@pytest.fixture(scope="module", autouse=True)
def passphrase(monkeypatch_module: pytest.MonkeyPatch) -> str:
    monkeypatch_module.setenv(PASSPHRASE_ENV, PASSPHRASE)
    return PASSPHRASE


def unpacked(archive: Path) -> tarfile.TarFile:
    """The archive's tar, decrypted with the passphrase."""
    with archive.open("rb") as f:
        return tarfile.open(fileobj=io.BytesIO(unseal(f, PASSPHRASE.encode(), archive)))


def sealed(tar_gz: bytes, target: Path) -> Path:
    """`tar_gz` encrypted as `voucher backup` encrypts: what someone holding the passphrase could forge."""
    with target.open("wb") as f:
        seal(tar_gz, PASSPHRASE.encode(), f)
    return target


@pytest.fixture(scope="module", params=backends())
def original(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_databases: ExitStack,
    monkeypatch_module: pytest.MonkeyPatch,
) -> Original:
    kind = str(request.param)
    folder = tmp_path_factory.mktemp("original")
    data_dir, archive = folder / "data", folder / "ledger.backup"
    database_url = fresh_database(kind, pg_databases)
    info = devnet.up(data_dir, port=0, block_time=None)
    try:
        contract = ensure_deployed(data_dir, info.rpc_url).voucher.address
        service = serve(data_dir, database_url)
        svc = next(service)
        try:
            with Api(svc) as api:
                provider = api.provider()
                pid = api.programme([provider["id"]])["id"]
                enterprises = [api.enterprise() for _ in range(2)]
                api.fund(enterprises[0], pid, 300_000_00)
                api.fund(enterprises[1], pid, 120_000_00)
                assert api.redeem(provider, enterprises[0], pid, 100_000_00)["status"] == "confirmed"
                keys = {str(e["id"]): api.key_for("enterprise", e["id"]) for e in enterprises}
                keys["provider"] = api.key_for("provider", provider["id"])
                balances = {(e["id"], pid): svc.ctx.chain.balance(e["address"], pid) for e in enterprises}
                assert balances == {(enterprises[0]["id"], pid): 250_000_00, (enterprises[1]["id"], pid): 120_000_00}
                # Online: the service is still up while the backup is taken.
                if database_url is not None:
                    monkeypatch_module.setenv("DATABASE_URL", database_url)
                assert main(["backup", "--data-dir", str(data_dir), "--out", str(archive)]) == 0
                monkeypatch_module.delenv("DATABASE_URL", raising=False)
        finally:
            service.close()
    finally:
        devnet.down(data_dir)
    return Original(archive, data_dir, contract, balances, enterprises, provider, pid, keys, kind)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_archive_is_private_and_lists_what_it_holds(original: Original) -> None:
    assert original.archive.stat().st_mode & 0o777 == 0o600
    with unpacked(original.archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    members = set(manifest["members"])
    assert {"anvil-state.json", "deployment.json", *SECRET_FILES} <= members
    assert ("ledger.db" in members) == (original.database == "sqlite")
    assert manifest["contract"] == original.contract and manifest["block_number"] > 0
    chain_id = Deployment.load(original.data_dir / "deployment.json").chain_id
    assert manifest["chain_id"] == chain_id and manifest["database"] == original.database


def test_restored_folder_runs_the_same_ledger(
    original: Original,
    tmp_path: Path,
    pg_databases: ExitStack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    restored = tmp_path / "restored"
    database_url = fresh_database(original.database, pg_databases)
    if database_url is not None:
        monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["restore", "--from", str(original.archive), "--data-dir", str(restored)]) == 0
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert restored.stat().st_mode & 0o777 == 0o700
    for path in restored.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path.name
    printed = capsys.readouterr()
    for name in ("master.key", "admin.key"):
        assert (restored / name).read_text().strip() not in printed.out + printed.err

    info = devnet.up(restored, port=0, block_time=None)
    try:
        deployment = ensure_deployed(restored, info.rpc_url)
        assert deployment.voucher.address == original.contract
        assert Deployment.load(restored / "deployment.json").rpc_url == info.rpc_url
        service = serve(restored, database_url)
        svc = next(service)
        try:
            check_restored_service(original, svc)
        finally:
            service.close()
    finally:
        devnet.down(restored)


def check_restored_service(original: Original, svc: Service) -> None:
    pid, first = original.programme_id, original.enterprises[0]
    with Api(svc) as api:
        for (enterprise_id, programme_id), balance in original.balances.items():
            mine = api.as_(original.keys[str(enterprise_id)])  # API keys made before the backup still work
            listed = api.ok(mine.get(f"/v1/enterprises/{enterprise_id}/balances"))
            assert {b["programme_id"]: b["balance"] for b in listed}[programme_id] == balance
        # Every managed key can still sign: the provider's sends the burn, the enterprise's signs the consent.
        provider_api = api.as_(original.keys["provider"])
        body = {"enterprise_id": first["id"], "programme_id": pid, "invoice_number": f"FP-R-{uuid.uuid4().hex[:8]}",
                "invoice_amount": 40_000_00, "category": "intelligent"}  # fmt: skip
        claim = api.ok(provider_api.post("/v1/redemptions", body), 201)
        confirmed = api.ok(api.as_(original.keys[str(first["id"])]).post(f"/v1/redemptions/{claim['id']}/confirm"))
        assert confirmed["status"] == "confirmed"
        assert svc.ctx.chain.balance(first["address"], pid) == original.balances[(first["id"], pid)] - 20_000_00
        # The issuer and admin operator keys sign too: a new issuance goes through.
        api.fund(original.enterprises[1], pid, 10_000_00)
        assert svc.ctx.chain.balance(original.enterprises[1]["address"], pid) == 130_000_00
        assert api.ok(api.get("/v1/audit/reconciliation"))["differences"] == []


def tampered_copy(archive: Path, target: Path, name: str) -> Path:
    """The same archive with one member's bytes changed and its manifest left as it was, sealed again with the
    passphrase: the manifest's hashes still catch it."""
    packed = io.BytesIO()
    with unpacked(archive) as src, tarfile.open(fileobj=packed, mode="w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == name:
                data = data.replace(b'"', b"'", 1) if name.endswith(".json") else data[::-1]
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return sealed(packed.getvalue(), target)


@pytest.mark.parametrize("member", ["master.key", "deployment.json"])
def test_restore_refuses_a_tampered_archive(
    original: Original, tmp_path: Path, member: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tampered_copy(original.archive, tmp_path / "bad.backup", member)
    target = tmp_path / "restored"
    assert main(["restore", "--from", str(bad), "--data-dir", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{member} does not match its sha256" in err and "tampered" in err
    assert not target.exists()


def test_restore_refuses_a_folder_that_is_not_empty(
    original: Original, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["restore", "--from", str(original.archive), "--data-dir", str(tmp_path)]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_backup_never_overwrites_a_file(original: Original, capsys: pytest.CaptureFixture[str]) -> None:
    before = original.archive.read_bytes()
    assert main(["backup", "--data-dir", str(original.data_dir), "--out", str(original.archive)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert original.archive.read_bytes() == before
