"""The service for tests, built one way: a data folder on a devnet (the session's unless told otherwise), settings
for it, and the API served over real HTTP in this process; and fresh databases (SQLite, and PostgreSQL where one
is reachable, as on CI)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn

from backend.api.app import create_app
from backend.chain import devnet
from backend.chain.deploy import DEPLOYMENT_FILE, ensure_deployed
from backend.services.context import Context
from backend.services.wiring import build_context
from backend.settings import Settings
from tests.api.support import Service
from tests.polling import eventually
from tests.support import copy_node_access

PG_ADMIN_URL = os.environ.get("VOUCHER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@cache
def backends() -> tuple[str, ...]:
    """The databases a `both_databases` module runs on: SQLite, and PostgreSQL where one answers."""
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=2).close()
    except psycopg.Error:
        return ("sqlite",)
    return ("sqlite", "postgresql")


@contextmanager
def pg_database(prefix: str = "cvl_test") -> Iterator[str]:
    """A new empty PostgreSQL database, dropped afterwards (with whatever still holds a connection to it)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def service_settings(data_dir: Path, *, database_url: str | None = None, **fields: Any) -> Settings:
    """Settings for a service on `data_dir`; its database is SQLite in the folder unless `database_url` says."""
    return Settings(data_dir=data_dir, database_url=database_url or f"sqlite:///{data_dir / 'ledger.db'}", **fields)


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def run_service(settings: Settings) -> Generator[Service, None, None]:
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

        def started() -> bool:
            if not thread.is_alive():
                raise RuntimeError("the API server did not start")
            return server.started

        eventually(started, timeout=60, interval=0.02, message="the API server did not start")
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


@dataclass(frozen=True)
class ServiceFactory:
    """Service folders, settings and running services on the devnet of `devnet_dir`."""

    devnet_dir: Path
    tmp: pytest.TempPathFactory | None  # where folders given by name are made

    def folder(self, name: str | Path, *, own_contract: bool = False) -> Path:
        """A service folder with the node's token and the admin key, and either the devnet's deployment record or
        (`own_contract`) a contract deployed for it alone, whose chain history is exactly what its tests did.
        `name`: a new temporary folder so named, or the path to make it at."""
        if isinstance(name, str):
            assert self.tmp is not None, "a folder by name needs a temporary folder factory"
            target = self.tmp.mktemp(name)
        else:
            target = name
        copy_node_access(self.devnet_dir, target)
        if own_contract:
            info = devnet.status(self.devnet_dir)
            assert info is not None, f"no devnet runs for {self.devnet_dir}"
            ensure_deployed(target, info.rpc_url)
        else:
            shutil.copy2(self.devnet_dir / DEPLOYMENT_FILE, target / DEPLOYMENT_FILE)
        return target

    def serve(
        self, name: str | Path, *, own_contract: bool = False, database_url: str | None = None, **fields: Any
    ) -> Generator[Service, None, None]:
        """The API on a new folder (see `folder`) with these settings, until the caller is done."""
        folder = self.folder(name, own_contract=own_contract)
        return run_service(service_settings(folder, database_url=database_url, **fields))
