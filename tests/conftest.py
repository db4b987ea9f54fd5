"""Shared fixtures: one real anvil devnet per session (always stopped), a snapshot revert around each test, and
the service over real HTTP on that devnet with a fresh database per test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from backend.chain import devnet
from backend.chain.deploy import Deployment, ensure_deployed
from tests.api.support import Api, Service
from tests.factory import ServiceFactory, backends, pg_database
from tests.support import Ledger, ledger_of

# Hypothesis: a quick search on a developer's run, a deeper one on CI (CI=true) that is the same every run
# (derandomized: a CI failure replays locally with HYPOTHESIS_PROFILE=ci). Every step of the project's property
# tests is a transaction on the devnet, so examples are dear: the counts are sized for the stateful test.
settings.register_profile("dev", max_examples=25, stateful_step_count=60, print_blob=True)
settings.register_profile("ci", max_examples=75, stateful_step_count=60, derandomize=True)
ON_CI = os.environ.get("CI") in ("true", "1")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if ON_CI else "dev"))


@pytest.fixture(scope="session")
def devnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A devnet in automine mode (a block per transaction: fast, deterministic tests)."""
    data_dir = tmp_path_factory.mktemp("devnet")
    devnet.up(data_dir, port=0, block_time=None, unsafe=True)  # unsafe: tests travel in time
    try:
        yield data_dir
    finally:
        devnet.down(data_dir)


@pytest.fixture(scope="session")
def deployment(devnet_dir: Path) -> Deployment:
    info = devnet.status(devnet_dir)
    assert info is not None
    return ensure_deployed(devnet_dir, info.rpc_url)


@pytest.fixture(scope="session")
def session_ledger(deployment: Deployment, devnet_dir: Path) -> Ledger:
    ledger = ledger_of(devnet_dir, deployment)
    ledger.grant_staff_roles()
    return ledger


@pytest.fixture
def ledger(session_ledger: Ledger) -> Iterator[Ledger]:
    """The session's ledger, with every change this test makes undone afterwards."""
    w3 = session_ledger.w3
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    try:
        yield session_ledger
    finally:
        assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True  # type: ignore[arg-type]


# -- the service ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def services(devnet_dir: Path, deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> ServiceFactory:
    """Builds service folders, settings and running services on the session devnet (see tests/factory.py)."""
    return ServiceFactory(devnet_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if getattr(request, "param", "sqlite") == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'ledger.db'}"
        return
    with pg_database() as url:
        yield url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Modules that mark themselves `both_databases` run once per backend; the rest on SQLite.
    if "database_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_databases"):
        metafunc.parametrize("database_url", backends(), indirect=True, scope="module")


@pytest.fixture(scope="module")
def service(services: ServiceFactory, database_url: str) -> Iterator[Service]:
    yield from services.serve("service", database_url=database_url)


@pytest.fixture(scope="module")
def own_contract_service(services: ServiceFactory, database_url: str) -> Iterator[Service]:
    """The service on a contract deployed for its module alone: mirror, reconciliation and reports can be compared
    with the contract's whole history."""
    yield from services.serve("own-contract", own_contract=True, database_url=database_url)


@pytest.fixture(scope="module")
def api(service: Service) -> Iterator[Api]:
    with Api(service) as client:
        yield client
