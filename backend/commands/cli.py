"""The `voucher` console command: the user's handle on the devnet, the compiler and (later) the service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend import version
from backend.chain import compiler, devnet
from backend.chain.deploy import DeploymentError, admin_account, ensure_deployed
from backend.paths import DEFAULT_DATA_DIR
from backend.private_files import restrict_umask
from backend.settings import ConfigError, Settings

GRACEFUL_STOP_S = 3  # a clean stop waits this long for requests in flight; stored transactions outlive it
PRIVATE_COMMANDS = {"serve", "devnet", "deploy", "backup", "restore"}  # the ones that write into a data folder


def _devnet_up(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    block_time = None if args.automine else args.block_time
    unsafe, open_node = getattr(args, "unsafe_dev_methods", False), getattr(args, "open_node", False)
    info = devnet.up(data_dir, port=args.port, block_time=block_time, unsafe=unsafe, open_node=open_node)
    try:
        deployment = ensure_deployed(data_dir, info.rpc_url, redeploy=args.redeploy)
    except DeploymentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    mining = "a block per transaction" if info.block_time is None else f"blocks at most every {info.block_time}s"
    print(f"devnet running at {info.rpc_url} (chain id {info.chain_id}, pid {info.pid}, {mining})")
    print(f"writes and perm_* need the node token in {data_dir / 'node-token'}; reads are open")
    if info.unsafe:
        print("UNSAFE: development methods (time travel, snapshots) are answered: for tests and demos only")
    print(f"ComputeVoucher at {deployment.voucher.address} (block {deployment.voucher.deploy_block})")
    print(f"deployment written to {data_dir / 'deployment.json'}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    if args.print_admin:
        print(admin_account(args.data_dir).address)
        return 0
    try:
        deployment = ensure_deployed(args.data_dir, args.rpc_url, redeploy=args.redeploy)
    except DeploymentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ComputeVoucher at {deployment.voucher.address} on chain {deployment.chain_id} ({args.rpc_url})")
    return 0


def _devnet_down(args: argparse.Namespace) -> int:
    stopped = devnet.down(args.data_dir)
    print("devnet stopped, state kept in " + str(args.data_dir) if stopped else "no devnet was running")
    return 0


def _devnet_status(args: argparse.Namespace) -> int:
    info = devnet.status(args.data_dir)
    if info is None:
        print("no devnet running for " + str(args.data_dir))
        return 1
    print(f"devnet running at {info.rpc_url} (chain id {info.chain_id}, pid {info.pid})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    data_dir: Path = args.data_dir
    os.environ["VOUCHER_DATA_DIR"] = str(data_dir)
    settings = Settings()
    if settings.rpc_url is None and settings.start_devnet:
        up = argparse.Namespace(
            data_dir=data_dir,
            port=args.devnet_port,
            block_time=devnet.DEFAULT_BLOCK_TIME,
            automine=False,
            redeploy=False,
        )
        if _devnet_up(up) != 0:
            return 1
    try:
        from backend.services.wiring import build_context

        build_context(settings).close()  # checks configuration and bootstraps once, before workers start
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    key_file = data_dir / "admin-api-key"
    print(f"admin API key: {key_file} (keep it secret); API docs at http://{args.host}:{args.port}/docs")
    # A clean stop takes seconds: requests still waiting for a block are left to the monitor (their transactions
    # are stored), instead of holding the shutdown until each one's wait runs out.
    uvicorn.run("backend.api.main:app", host=args.host, port=args.port, workers=args.workers, log_level="info",
                timeout_graceful_shutdown=GRACEFUL_STOP_S)  # fmt: skip
    return 0


def _demo(args: argparse.Namespace) -> int:
    from backend.commands import demo

    return demo.main(args.url, args.data_dir, args.admin_key_file)


def _audit_verify(args: argparse.Namespace) -> int:
    from backend.audit import verify

    return verify.main(args.deployment, args.rpc)


def _backup(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from backend.commands.backup import backup
    from backend.commands.backup_crypto import BackupError, read_passphrase

    try:
        manifest = backup(args.data_dir, args.out, passphrase=read_passphrase(args.passphrase_file))
    except (BackupError, ValidationError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"encrypted backup written to {args.out} (mode 0600): chain {manifest['chain_id']} at block "
          f"{manifest['block_number']}, {manifest['database']} database, {len(manifest['members'])} files")  # fmt: skip
    print("without its passphrase it cannot be restored: keep the passphrase apart from the backup")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from backend.commands.backup_crypto import BackupError, read_passphrase
    from backend.commands.restore import restore

    try:
        url = Settings(data_dir=args.data_dir).database_url
        passphrase = read_passphrase(args.passphrase_file)
        manifest = restore(args.source, args.data_dir, passphrase=passphrase, database_url=url)
    except (BackupError, ValidationError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"restored {args.source} into {args.data_dir}: chain {manifest['chain_id']}, contract {manifest['contract']}")
    print(f"next: `voucher devnet up --data-dir {args.data_dir}`, then `voucher serve --data-dir {args.data_dir}`")
    return 0


def _build(args: argparse.Namespace) -> int:
    try:
        artifacts = compiler.build(force=args.force)
    except compiler.CompileError as exc:
        print(f"compilation failed:\n{exc}", file=sys.stderr)
        return 1
    for a in artifacts.values():
        if len(a.deployed_bytecode) > 2:
            print(f"{a.name}: {(len(a.deployed_bytecode) - 2) // 2} bytes of runtime code")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; the README's table of commands is tested against it."""
    parser = argparse.ArgumentParser(prog="voucher", description="Compute Voucher Ledger")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="compile the contracts into build/contracts")
    build.add_argument("--force", action="store_true", help="compile even if the sources did not change")
    build.set_defaults(func=_build)

    serve = sub.add_parser("serve", help="bring the devnet up if needed and serve the API")
    serve.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state folder (default ./.data)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.add_argument("--devnet-port", type=int, default=devnet.DEFAULT_PORT, help="RPC port of the devnet")
    serve.set_defaults(func=_serve)

    demo = sub.add_parser("demo", help="run a whole programme lifecycle against the running service (devnet)")
    demo.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default http://127.0.0.1:8000)")
    demo.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state folder (default ./.data)")
    demo.add_argument("--admin-key-file", type=Path, help="the admin API key (default D/admin-api-key)")
    demo.set_defaults(func=_demo)

    audit_group = sub.add_parser("audit", help="independent checks of the ledger")
    audit = audit_group.add_subparsers(dest="action", required=True)
    verify = audit.add_parser("verify", help="recompute every balance and invariant from chain logs alone, no database")
    verify.add_argument("--deployment", type=Path, required=True, help="deployment.json of the contract to audit")
    verify.add_argument("--rpc", help="the node's JSON-RPC URL (default: the one in the deployment file)")
    verify.set_defaults(func=_audit_verify)

    secret = (
        "The archive holds the master key that decrypts every managed key, so it is encrypted (scrypt, AES-256-GCM) "
        "under a passphrase of at least 12 characters, taken from the environment variable "
        "VOUCHER_BACKUP_PASSPHRASE or from the first line of --passphrase-file (a file only you can read), never "
        "from the command line, where every user could read it in the process list."
    )
    bak = sub.add_parser(
        "backup",
        help="archive the database and the devnet's chain state, consistently, encrypted",
        description="Writes one encrypted archive (mode 0600): the chain state (taken first), then the database "
        "(SQLite online backup, or a logical copy of every PostgreSQL table from DATABASE_URL), deployment.json, "
        "admin.key, master.key and a manifest of sha256 hashes. " + secret,
    )
    bak.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state folder (default ./.data)")
    bak.add_argument("--out", type=Path, required=True, help="the archive to write (never overwritten)")
    res = sub.add_parser(
        "restore",
        help="unpack a backup into a new data folder",
        description="Decrypts the archive and checks every byte and every file against the manifest's sha256, "
        "refuses a non-empty target folder, writes the files owner-only (0600, the folder 0700) and the database "
        "(SQLite into the folder; a PostgreSQL backup into DATABASE_URL, which must be empty). Then "
        "`voucher devnet up --data-dir NEW` loads the restored chain. " + secret,
    )
    res.add_argument("--from", dest="source", type=Path, required=True, help="the archive `voucher backup` wrote")
    res.add_argument("--data-dir", type=Path, required=True, help="the new data folder (must be empty)")
    for p, func in ((bak, _backup), (res, _restore)):
        p.add_argument(
            "--passphrase-file", type=Path, help="file whose first line is the passphrase (default: the environment "
            "variable VOUCHER_BACKUP_PASSPHRASE)"
        )  # fmt: skip
        p.set_defaults(func=func)

    dep = sub.add_parser("deploy", help="deploy to any EVM node (e.g. Besu) unless it already has the contract")
    dep.add_argument("--rpc-url", required=True, help="the node's JSON-RPC URL")
    dep.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where the admin key and record live")
    dep.add_argument("--redeploy", action="store_true", help="deploy afresh if the recorded contract is gone")
    dep.add_argument("--print-admin", action="store_true", help="only print the admin address (to allowlist it)")
    dep.set_defaults(func=_deploy)

    net = sub.add_parser("devnet", help="the local permissioned chain").add_subparsers(dest="action", required=True)
    up = net.add_parser("up", help="start the devnet in the background and deploy the contract if needed")
    up.add_argument("--port", type=int, default=devnet.DEFAULT_PORT, help="RPC port; 0 picks a free one")
    up.add_argument("--block-time", type=float, default=devnet.DEFAULT_BLOCK_TIME,
                    help="at most one block per this many seconds while transactions wait; none when idle")  # fmt: skip
    up.add_argument("--automine", action="store_true", help="a block per transaction (tests, not load)")
    up.add_argument("--redeploy", action="store_true", help="deploy afresh if the recorded contract is gone")
    up.add_argument(
        "--unsafe-dev-methods",
        action="store_true",
        help="UNSAFE: answer time travel and snapshots (with the node token): test and demo devnets only",
    )
    up.add_argument(
        "--open-node",
        action="store_true",
        help="UNSAFE: run anvil without a private network namespace, where the machine forbids one",
    )
    up.set_defaults(func=_devnet_up)
    down = net.add_parser("down", help="stop the devnet; its state is kept")
    down.set_defaults(func=_devnet_down)
    st = net.add_parser("status", help="is the devnet running?")
    st.set_defaults(func=_devnet_status)
    for p in (up, down, st):
        p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state folder (default ./.data)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in PRIVATE_COMMANDS:
        restrict_umask()  # every file written into a data folder, here or by a child process, is the owner's alone
    try:
        return int(args.func(args))
    except (devnet.DevnetError, compiler.CompileError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
