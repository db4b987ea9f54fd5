"""Wires the service together at start: settings checked, database ready, chain reachable, the pipeline built
with its completion handlers, operator keys holding their roles, and a bootstrap admin API key for the first user."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from backend.chain.codec import LedgerCodec
from backend.chain.deploy import DEPLOYMENT_FILE, Deployment, admin_account
from backend.chain.keystore import EncryptedKeyStore
from backend.chain.ledger import ROLES, VoucherChain
from backend.chain.pipeline import TxPipeline
from backend.chain.receipts import BlockFollower
from backend.chain.rpc import Rpc
from backend.db import init_db, make_engines
from backend.errors import NodeUnavailable
from backend.groupcommit import GroupWriter
from backend.models import ApiKey, FormerAddress
from backend.models.states import TxKind
from backend.private_files import private_dir
from backend.services.apikeys import create_api_key
from backend.services.completions import COMPLETIONS
from backend.services.context import Context
from backend.settings import ConfigError, Settings

log = logging.getLogger(__name__)
ADMIN_API_KEY_FILE = "admin-api-key"


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
        # Built one way, in this order: RPC -> block follower -> codec -> pipeline -> chain.
        follower = BlockFollower(rpc)
        follower.start()
        codec = LedgerCodec(deployment.voucher.abi, deployment.voucher.address)
        writer = GroupWriter(engine)
        pipeline = TxPipeline(
            rpc=rpc,
            writer=writer,
            follower=follower,
            signer=keys,
            chain_id=deployment.chain_id,
            to=codec.address,
            translate=codec.translate,
            decode_events=codec.decode_events,
            completions=COMPLETIONS,
            wait_s=settings.receipt_wait_s,
        )
        chain = VoucherChain(deployment, rpc, codec, pipeline)
        chain.clock = follower.head_time
        operators = {"admin": str(admin.address)}
        for role in ROLES:
            address = keys.find(f"operator:{role}") or keys.create(f"operator:{role}")
            if not chain.has_role(role, address):
                chain.send(admin.address, "grantRole", ROLES[role], address, kind=TxKind.GRANT_ROLE, ref=role)
            operators[role] = address
        _sync_allowlist(engine, keys, chain, operators["admin"])
        ctx = Context(
            settings=settings,
            engine=engine,
            chain=chain,
            keys=keys,
            operators=operators,
            writer=writer,
            reads=GroupWriter(reader, name="db-reader", read_only=True),
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
    with ctx.read() as s:
        if s.exec(select(ApiKey).where(ApiKey.role == "admin")).first() is not None:
            return None
    key = create_api_key(ctx, role="admin", participant_id=None, label="bootstrap admin")
    path = ctx.settings.data_dir / ADMIN_API_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # a file left by an older install keeps its mode through O_TRUNC
    with os.fdopen(fd, "w") as f:
        f.write(key.secret + "\n")
    log.info("bootstrap admin API key written to %s", path)
    return path
