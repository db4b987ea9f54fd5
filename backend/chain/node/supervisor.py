"""The devnet as one process: the private anvil, the permissioned gateway in front of it, a miner that makes
blocks only while transactions wait, and the dumps that keep its state. Started by `voucher devnet up`.

If anvil dies, the supervisor restarts it from the last good dump; if the supervisor dies, anvil dies with it
and the next `voucher devnet up` does the same. Run: python -m backend.chain.node.supervisor --data-dir D ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvicorn
import uvloop

from backend.chain.deploy import admin_account
from backend.chain.node import sandbox, statefile
from backend.chain.node.gateway import Gateway
from backend.chain.node.ipc import IpcPool, NodeDown
from backend.chain.node.permissions import Permissions, load_or_create_token, write_private
from backend.paths import PROJECT_ROOT

log = logging.getLogger("devnet")
BLOCK_GAS_LIMIT = 300_000_000
DUMP_INTERVAL_S = 2.0
# A dump holds the node still for as long as it takes, and anvil's dump grows with the whole history (about
# 7 KB a redemption): dumps are spaced so that they take at most this share of the node's time.
DUMP_SHARE = 0.05
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def anvil_binary() -> Path:
    """The platform binary that `npm ci` put in node_modules (not the npm wrapper script)."""
    system, machine = os.uname().sysname.lower(), os.uname().machine.lower()
    package = f"anvil-{system}-{_ARCH.get(machine, machine)}"
    path = PROJECT_ROOT / "node_modules" / "@foundry-rs" / package / "bin" / "anvil"
    if not path.is_file():
        raise sandbox.SandboxError(f"anvil binary not found at {path}: run `npm ci` in {PROJECT_ROOT} (or `make run`)")
    return path


def _socket_path(node_dir: Path) -> Path:
    path = node_dir / "anvil.ipc"
    if len(str(path)) < 100:  # a Unix socket path is limited to 108 bytes
        return path
    return Path(tempfile.mkdtemp(prefix="cvl-node-")) / "anvil.ipc"  # mkdtemp makes it 0700


class Supervisor:
    def __init__(self, args: argparse.Namespace) -> None:
        self.data_dir: Path = args.data_dir
        self.node_dir = self.data_dir / "node"
        self.node_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.block_time: float | None = args.block_time
        self.chain_id: int = args.chain_id
        self.private = not args.open_node
        self.socket = _socket_path(self.node_dir)
        self.pool = IpcPool(str(self.socket))
        self.proc: subprocess.Popen[bytes] | None = None
        self.up = False
        self.stopping = False
        self.dirty = False
        self.dump_pause = DUMP_INTERVAL_S
        self.work = asyncio.Event()
        permissions = Permissions(self.node_dir / "permissions.json", admin=admin_account(self.data_dir).address)
        self.gateway = Gateway(self.pool, permissions, load_or_create_token(self.data_dir), self.chain_id,
                               unsafe=args.unsafe, automine=self.block_time is None, on_write=self._changed,
                               ready=lambda: self.up)  # fmt: skip

    def _changed(self) -> None:
        self.dirty = True
        self.work.set()

    async def start_node(self) -> None:
        dump, notes = statefile.choose(self.node_dir, legacy_dir=self.data_dir)
        for note in notes:
            log.warning("state: %s", note)
        args = [
            str(anvil_binary()), "--ipc", str(self.socket), "--host", "127.0.0.1", "--port", "8545",
            "--chain-id", str(self.chain_id), "--gas-price", "0", "--block-base-fee-per-gas", "0",
            "--gas-limit", str(BLOCK_GAS_LIMIT), "--accounts", "0",
            "--quiet",  # anvil logs every call's method: a polling service would grow its log without end
        ]  # fmt: skip
        if not self.private:
            args[args.index("8545")] = str(_free_port())  # open node: its own port, reachable by every local process
        if self.block_time is not None:
            args.append("--no-mining")  # our miner makes blocks, and only while transactions wait
        load = self.node_dir / "load-state.json"
        if dump is not None:
            raw = dump.path.read_bytes()
            with os.fdopen(os.open(load, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
            args += ["--load-state", str(load)]
            log.info("state: loading %s (head block %d)", dump.path.name, dump.head)
            if notes:
                log.warning("state: the blocks after %d were lost with the dumps passed over", dump.head)
        self.socket.unlink(missing_ok=True)
        self.pool = self.gateway.pool = IpcPool(str(self.socket))  # no connection of a dead node is reused
        self.proc = sandbox.start(args, log=self.data_dir / "anvil.log", cwd=self.node_dir, private=self.private)
        write_private(self.node_dir / "anvil.pid", str(self.proc.pid))
        deadline = time.monotonic() + 30
        while True:
            try:
                await self.pool.call("eth_chainId")
                break
            except NodeDown:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.data_dir / "anvil.log").read_text(errors="replace")[-600:]
                    raise sandbox.SandboxError(f"anvil did not start; last lines of anvil.log:\n{tail}") from None
                await asyncio.sleep(0.05)
        load.unlink(missing_ok=True)
        self.up = True
        if dump is None or notes:
            self.dirty = True  # a new chain, or one recovered from an older dump: store it as the current one

    async def watch_node(self) -> None:
        """Restarts anvil from the last good dump when it dies under us."""
        while not self.stopping:
            await asyncio.sleep(0.2)
            if self.proc is not None and self.proc.poll() is not None and not self.stopping:
                self.up = False
                log.warning("anvil exited (code %s): restarting from the last good dump", self.proc.returncode)
                await self.start_node()

    async def mine(self) -> None:
        """A block as soon as a transaction arrives, then at most one per block time while more wait; none idle.

        A transaction the gateway passed wakes the miner at once; the pool is also looked at once per block time,
        for what reached the node otherwise (a reloaded pool, the operator's own socket)."""
        assert self.block_time is not None
        last = 0.0
        while not self.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.work.wait(), timeout=self.block_time)
            if not self.work.is_set() and not await self._pending():
                continue
            self.work.clear()
            await asyncio.sleep(max(0.0, last + self.block_time - time.monotonic()))
            with contextlib.suppress(NodeDown, RuntimeError):
                async with self.gateway.gate.shared():
                    await self.pool.call("evm_mine")
                self.dirty = True
            last = time.monotonic()

    async def _pending(self) -> bool:
        try:
            status = await self.pool.call("txpool_status")
        except (NodeDown, RuntimeError):
            return False
        return int(str(status.get("pending", "0x0")), 16) > 0

    async def dump(self) -> None:
        """One dump, alone with the node (no block in the making), written atomically after its check."""
        self.dirty = False
        try:
            started = time.monotonic()
            async with self.gateway.gate.exclusive():
                head = int(await self.pool.call("eth_blockNumber"), 16)
                hex_dump = await self.pool.call("anvil_dumpState")
            self.dump_pause = max(DUMP_INTERVAL_S, (time.monotonic() - started) / DUMP_SHARE)
            await asyncio.to_thread(statefile.write, self.node_dir, bytes.fromhex(hex_dump[2:]))
            write_private(self.node_dir / "dumped", f"{head}\n")  # `voucher backup` waits for this to change
            log.debug("state: dumped at block %d", head)
        except (NodeDown, RuntimeError, ValueError) as exc:
            self.dirty = True
            log.warning("state: dump failed, the previous one is kept (%s)", exc)

    async def dump_periodically(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.dump_pause)
            if self.dirty and self.up:
                await self.dump()

    async def run(self, port: int) -> None:
        await self.start_node()
        config = uvicorn.Config(self.gateway, host="127.0.0.1", port=port, lifespan="off", access_log=False,
                                log_level="warning", loop="none")  # fmt: skip
        server = uvicorn.Server(config)
        # Our own signal handling: uvicorn re-raises SIGTERM after serving, which would skip the last dump.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop, lambda: setattr(server, "should_exit", True))
        loop.add_signal_handler(signal.SIGUSR1, lambda: asyncio.ensure_future(self.dump()))
        tasks = [asyncio.create_task(self.watch_node()), asyncio.create_task(self.dump_periodically())]
        if self.block_time is not None:
            tasks.append(asyncio.create_task(self.mine()))
        try:
            await server.serve()  # until SIGTERM or SIGINT
        finally:
            self.stopping = True
            for task in tasks:
                task.cancel()
            if self.up and self.dirty:
                await self.dump()
            if self.proc is not None:
                self.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)
            await self.pool.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devnet-supervisor")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chain-id", type=int, required=True)
    parser.add_argument("--block-time", type=float, default=None, help="omit for a block per transaction")
    parser.add_argument("--unsafe", action="store_true", help="answer development methods (tests, demos)")
    parser.add_argument("--open-node", action="store_true", help="no private network namespace (unsafe)")
    args = parser.parse_args(argv)
    os.umask(0o077)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        uvloop.run(Supervisor(args).run(args.port))
    except sandbox.SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
