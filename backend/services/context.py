"""Wires the service together at start: settings checked, database ready, chain reachable, operator keys
holding their roles, and a bootstrap admin API key written for the first user."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from backend.chain.deploy import DEPLOYMENT_FILE, Deployment, admin_account
from backend.chain.keystore import EncryptedKeyStore
from backend.chain.ledger import ROLES, VoucherChain
from backend.chain.pipeline import TxPipeline
from backend.chain.receipts import ReceiptWatcher
from backend.chain.rpc import Rpc
from backend.db import init_db, make_engines
from backend.errors import NodeUnavailable, NotFound
from backend.models import ApiKey, FormerAddress, utcnow
from backend.private_files import private_dir
from backend.services.apikey_records import add_api_key
from backend.settings import ConfigError, Settings

log = logging.getLogger(__name__)
ADMIN_API_KEY_FILE = "admin-api-key"
T = TypeVar("T", bound=SQLModel)


@dataclass
class Context:
    settings: Settings
    engine: Engine
    chain: VoucherChain
    keys: EncryptedKeyStore
    operators: dict[str, str]  # role -> managed address that acts for it on chain
    watcher: ReceiptWatcher
    reader: Engine | None = None  # read-only sessions; the writer when not set
    extras: dict[str, object] = field(default_factory=dict)
    # The service's wall clock (claims expire by it); tests move it instead of waiting days.
    clock: Callable[[], datetime] = field(default=utcnow)

    def read(self) -> Session:
        """A session for reads only (on SQLite it never takes the write lock)."""
        return Session(self.reader or self.engine, expire_on_commit=False)

    def fetch(self, model: type[T], ident: object, resource: str) -> T:
        """The row with primary key `ident`, or NotFound naming `resource`."""
        with self.read() as s:
            row = s.get(model, ident)
        if row is None:
            raise NotFound(resource, ident)
        return row

    def write(self) -> Session:
        """A session that writes: keep it short and never hold it across a call to the chain."""
        return Session(self.engine, expire_on_commit=False)

    @property
    def pipeline(self) -> TxPipeline:
        assert self.chain.pipeline is not None
        return self.chain.pipeline

    def close(self) -> None:
        for worker in self.extras.values():  # background threads (monitor, event mirror) stop first
            stop = getattr(worker, "stop", None)
            if stop is not None:
                stop()
        self.watcher.stop()
        self.chain.rpc.close()
        self.engine.dispose()
        if self.reader is not None:
            self.reader.dispose()


def _load_deployment(settings: Settings) -> Deployment:
    path = settings.data_dir / DEPLOYMENT_FILE
    if not path.is_file():
        raise ConfigError(f"no {path}: start the devnet with `voucher devnet up --data-dir {settings.data_dir}` first")
    return Deployment.load(path)


def _check_chain(rpc: Rpc, rpc_url: str, deployment: Deployment, settings: Settings) -> None:
    try:
        chain_id = rpc.chain_id()
    except NodeUnavailable:
        raise ConfigError(f"the chain node at {rpc_url} does not answer: start it (`voucher devnet up`)") from None
    if chain_id != deployment.chain_id:
        raise ConfigError(
            f"the node at {rpc_url} runs chain {chain_id}, but {settings.data_dir / DEPLOYMENT_FILE} "
            f"is for chain {deployment.chain_id}: point VOUCHER_RPC_URL at the right node"
        )
    if rpc.code(deployment.voucher.address) in ("0x", "0x0", None):
        raise ConfigError(
            f"the chain at {rpc_url} has no contract at {deployment.voucher.address}: its state was lost; "
            "run `voucher devnet up --redeploy` to start a fresh ledger"
        )


def build_context(settings: Settings) -> Context:
    deployment = _load_deployment(settings)
    private_dir(settings.data_dir)  # before the database and the keys are written into it
    admin = admin_account(settings.data_dir)  # refused (key file open to others) before anything is opened
    rpc_url = settings.rpc_url or deployment.rpc_url
    rpc = Rpc(rpc_url, token=settings.node_token())
    try:
        _check_chain(rpc, rpc_url, deployment, settings)
    except BaseException:
        rpc.close()
        raise
    engine, reader = make_engines(settings.db_url)
    # Worker processes start together: one at a time creates tables, operator keys and role grants.
    with _bootstrap_lock(settings.data_dir):
        init_db(engine)
        keys = EncryptedKeyStore(engine, settings.master_key_bytes())
        keys.adopt(admin)
        watcher = ReceiptWatcher(rpc)
        watcher.start()
        chain = VoucherChain(deployment, rpc)
        chain.clock = watcher.head_time
        chain.pipeline = TxPipeline(
            rpc=rpc,
            engine=engine,
            signer=keys,
            chain_id=deployment.chain_id,
            translate=chain.translate,
            watcher=watcher,
            wait_s=settings.receipt_wait_s,
            filler_to=chain.address,
        )
        operators = {"admin": str(admin.address)}
        for role in ROLES:
            address = keys.find(f"operator:{role}") or keys.create(f"operator:{role}")
            if not chain.has_role(role, address):
                chain.send(admin.address, "grantRole", ROLES[role], address, kind="grant_role", ref=role)
            operators[role] = address
        _sync_allowlist(engine, keys, chain, operators["admin"])
        ctx = Context(
            settings=settings,
            engine=engine,
            chain=chain,
            keys=keys,
            operators=operators,
            watcher=watcher,
            reader=reader if reader is not engine else None,
        )
        ensure_admin_api_key(ctx)
    return ctx


def _sync_allowlist(engine: Engine, keys: EncryptedKeyStore, chain: VoucherChain, admin: str) -> None:
    """The node's allowlist holds every managed key in use (also one made just before a crash), no retired one."""
    with Session(engine) as s:
        retired = set(s.exec(select(FormerAddress.address).where(FormerAddress.status == "retired")).all())
    chain.permit(admin, *(a for a in keys.addresses() if a not in retired))
    chain.forbid(*retired)


@contextmanager
def _bootstrap_lock(data_dir: Path) -> Iterator[None]:
    fd = os.open(data_dir / "bootstrap.lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_admin_api_key(ctx: Context) -> Path | None:
    """On first start, create an admin API key and write it to D/admin-api-key (mode 0600)."""
    with ctx.write() as s:
        if s.exec(select(ApiKey).where(ApiKey.role == "admin")).first() is not None:
            return None
        key = add_api_key(s, role="admin", participant_id=None, label="bootstrap admin")
        s.commit()
    path = ctx.settings.data_dir / ADMIN_API_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # a file left by an older install keeps its mode through O_TRUNC
    with os.fdopen(fd, "w") as f:
        f.write(key.secret + "\n")
    log.info("bootstrap admin API key written to %s", path)
    return path
