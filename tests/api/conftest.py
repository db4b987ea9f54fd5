"""A real service over real HTTP: uvicorn on a free port, against the session's anvil devnet, with a fresh
database per test module (SQLite, and PostgreSQL where one is reachable, as on CI)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import uvicorn

from backend.api.app import create_app
from backend.chain import devnet
from backend.chain.deploy import Deployment, ensure_deployed
from backend.services.context import Context
from backend.services.wiring import build_context
from backend.settings import Settings
from tests.api.support import Api, Service
from tests.support import copy_node_access

PG_ADMIN_URL = os.environ.get("VOUCHER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> bool:
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=2).close()
        return True
    except psycopg.Error:
        return False


BACKENDS = ["sqlite", "postgresql"] if _pg_reachable() else ["sqlite"]


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'ledger.db'}"
        return
    name = f"cvl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Modules that mark themselves `both_databases` run once per backend; the rest on SQLite.
    if "database_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_databases"):
        metafunc.parametrize("database_url", BACKENDS, indirect=True, scope="module")


def service_data_dir(devnet_dir: Path, target: Path) -> Path:
    """A service folder on the session devnet: its deployment record and the deployer's admin key."""
    copy_node_access(devnet_dir, target)
    shutil.copy2(devnet_dir / "deployment.json", target / "deployment.json")
    info = devnet.status(devnet_dir)
    assert info is not None
    Deployment.load(target / "deployment.json")
    return target


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def run_service(settings: Settings) -> Iterator[Service]:
    """Serves the API in this process on a free port until the caller is done."""
    holder: dict[str, Context] = {}

    def make() -> Context:
        holder["ctx"] = build_context(settings)
        return holder["ctx"]

    capture = LogCapture()
    logging.getLogger().addHandler(capture)
    port = devnet.free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(make), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="api-server", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the API server did not start")
            threading.Event().wait(0.02)
        admin_key = (settings.data_dir / "admin-api-key").read_text().strip()
        yield Service(
            url=f"http://127.0.0.1:{port}",
            data_dir=settings.data_dir,
            ctx=holder["ctx"],
            admin_key=admin_key,
            logs=capture.lines,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        logging.getLogger().removeHandler(capture)


@pytest.fixture(scope="module")
def service(
    devnet_dir: Path, deployment: Deployment, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    data_dir = service_data_dir(devnet_dir, tmp_path_factory.mktemp("service"))
    settings = Settings(data_dir=data_dir, database_url=database_url, receipt_wait_s=15.0)
    yield from run_service(settings)


def own_contract_dir(devnet_dir: Path, target: Path) -> Path:
    """A service folder on the session devnet with a contract deployed for it alone: its chain history is
    exactly what its tests did, so mirror, reconciliation and reports can be compared with the whole chain."""
    info = devnet.status(devnet_dir)
    assert info is not None
    copy_node_access(devnet_dir, target)
    ensure_deployed(target, info.rpc_url)
    return target


@pytest.fixture(scope="module")
def own_contract_service(
    devnet_dir: Path, deployment: Deployment, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    data_dir = own_contract_dir(devnet_dir, tmp_path_factory.mktemp("own-contract"))
    yield from run_service(Settings(data_dir=data_dir, database_url=database_url, receipt_wait_s=15.0))


@pytest.fixture(scope="module")
def api(service: Service) -> Iterator[Api]:
    with Api(service) as client:
        yield client
