"""The service refuses to start on configuration it cannot trust, and says what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from backend.chain import devnet
from backend.chain.deploy import Deployment
from backend.services.wiring import build_context
from backend.settings import ConfigError, Settings
from tests.factory import ServiceFactory


@pytest.fixture
def data_dir(services: ServiceFactory, tmp_path: Path) -> Path:
    return services.folder(tmp_path / "svc")


def _edit(data_dir: Path, **changes: object) -> None:
    path = data_dir / "deployment.json"
    raw = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "address":
            raw["contracts"]["ComputeVoucher"]["address"] = value
        else:
            raw[key] = value
    path.write_text(json.dumps(raw))


def test_refuses_a_node_on_another_chain(data_dir: Path) -> None:
    _edit(data_dir, chain_id=31337)
    running = devnet.rpc_chain_id(Deployment.load(data_dir / "deployment.json").rpc_url)
    with pytest.raises(ConfigError, match=rf"runs chain {running}.*is for chain 31337.*VOUCHER_RPC_URL"):
        build_context(Settings(data_dir=data_dir))


def test_refuses_an_unreachable_node(data_dir: Path) -> None:
    port = devnet.free_port()
    with pytest.raises(ConfigError, match=rf"127.0.0.1:{port} does not answer.*voucher devnet up"):
        build_context(Settings(data_dir=data_dir, rpc_url=f"http://127.0.0.1:{port}"))


def test_refuses_a_chain_without_the_contract(data_dir: Path) -> None:
    _edit(data_dir, address="0x" + "12" * 20)
    with pytest.raises(ConfigError, match=r"no contract at .*--redeploy"):
        build_context(Settings(data_dir=data_dir))


def test_refuses_a_missing_deployment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"deployment.json: start the devnet"):
        build_context(Settings(data_dir=tmp_path))


@pytest.mark.parametrize("key", ["00" * 32, "ab" * 16, "not-hex", "0123456789abcdef" * 4 + "00"])
def test_refuses_a_weak_or_malformed_master_key(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="VOUCHER_MASTER_KEY must be"):
        Settings(data_dir=tmp_path, master_key=SecretStr(key))


def test_refuses_a_master_key_file_others_can_read(data_dir: Path) -> None:
    Settings(data_dir=data_dir).master_key_bytes()
    (data_dir / "master.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Settings(data_dir=data_dir).master_key_bytes()


def test_first_start_writes_an_admin_api_key_readable_by_owner_only(data_dir: Path) -> None:
    ctx = build_context(Settings(data_dir=data_dir))
    try:
        key_file = data_dir / "admin-api-key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert key_file.read_text().startswith("cvl_")
        assert (data_dir / "master.key").stat().st_mode & 0o777 == 0o600
        for role in ("issuer", "finance", "supervisor"):
            assert ctx.chain.has_role(role, ctx.operators[role])
    finally:
        ctx.close()
