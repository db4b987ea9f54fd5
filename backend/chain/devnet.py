"""Runs the local permissioned devnet: anvil's own binary from node_modules, in the background, state in a folder.

Our own chain id, free gas, interval mining with short blocks by default (automine collapses under load),
bound to 127.0.0.1. State is dumped on a clean stop and every few seconds, and loaded on start.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from backend.paths import PROJECT_ROOT

CHAIN_ID = 727001
HOST = "127.0.0.1"
DEFAULT_PORT = 8545
DEFAULT_BLOCK_TIME = 0.25
BLOCK_GAS_LIMIT = 300_000_000
STATE_INTERVAL_S = 2
# Nodes this process started: kept referenced so they are reaped on `down`, not flagged when collected.
_STARTED: dict[int, subprocess.Popen[bytes]] = {}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class DevnetError(Exception):
    """The devnet could not be started, reached or stopped; the message says what to do."""


@dataclass(frozen=True)
class DevnetInfo:
    pid: int
    port: int
    chain_id: int
    block_time: float | None

    @property
    def rpc_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def anvil_binary() -> Path:
    """The platform binary that `npm ci` put in node_modules (not the npm wrapper script)."""
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    path = PROJECT_ROOT / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil"
    if not path.is_file():
        raise DevnetError(f"anvil binary not found at {path}: run `npm ci` in {PROJECT_ROOT} (or `make run`)")
    return path


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As a listening server binds: a port whose last connections are in TIME_WAIT (the devnet was just
        # stopped) is free for it, and must not be reported as taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _info_file(data_dir: Path) -> Path:
    return data_dir / "devnet.json"


def _alive(pid: int) -> bool:
    child = _STARTED.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _STARTED[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def rpc_chain_id(url: str, timeout: float = 2.0) -> int | None:
    """The node's chain id, or None if nothing answers at `url`."""
    try:
        r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=timeout)
        return int(r.json()["result"], 16)
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def status(data_dir: Path) -> DevnetInfo | None:
    """The devnet running for `data_dir`, or None (a stale record is removed)."""
    path = _info_file(data_dir)
    if not path.is_file():
        return None
    info = DevnetInfo(**json.loads(path.read_text()))
    if _alive(info.pid) and rpc_chain_id(info.rpc_url) == info.chain_id:
        return info
    if not _alive(info.pid):
        path.unlink(missing_ok=True)
        return None
    return info  # alive but not (yet) answering: still ours


def up(
    data_dir: Path,
    *,
    port: int = DEFAULT_PORT,
    block_time: float | None = DEFAULT_BLOCK_TIME,
    chain_id: int = CHAIN_ID,
    ready_timeout: float = 20.0,
) -> DevnetInfo:
    """Starts the devnet for `data_dir` in the background (or returns the one already running).

    `port=0` picks a free port; a taken port is refused with a message rather than silently replaced.
    `block_time=None` means automine (a block per transaction), which suits tests, not load.
    """
    # Absolute: anvil runs inside the data folder, where a relative --state path would point elsewhere.
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    running = status(data_dir)
    if running is not None:
        return running
    if port == 0:
        port = free_port()
    elif not port_is_free(port):
        raise DevnetError(
            f"port {port} on {HOST} is already taken by another program: "
            "stop it, choose another with --port P, or pass --port 0 to pick a free one"
        )
    args = [
        str(anvil_binary()),
        "--host", HOST, "--port", str(port), "--chain-id", str(chain_id),
        # Free gas: managed accounts hold no ether.
        "--gas-price", "0", "--block-base-fee-per-gas", "0", "--gas-limit", str(BLOCK_GAS_LIMIT),
        # No pre-funded, unlocked accounts: their keys are the same on every anvil in the world.
        "--accounts", "0",
        "--state", str(data_dir / "anvil-state.json"), "--state-interval", str(STATE_INTERVAL_S),
    ]  # fmt: skip
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    with open(data_dir / "devnet.log", "ab") as log:
        # A session of its own: the devnet outlives the command that started it and ignores its Ctrl-C.
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=data_dir
        )
    info = DevnetInfo(pid=proc.pid, port=port, chain_id=chain_id, block_time=block_time)
    deadline = time.monotonic() + ready_timeout
    while rpc_chain_id(info.rpc_url, timeout=0.5) != chain_id:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()  # reaped: no zombie, no "still running" ResourceWarning
            tail = (data_dir / "devnet.log").read_text(errors="replace")[-600:]
            raise DevnetError(f"anvil did not start on {info.rpc_url}; last lines of devnet.log:\n{tail}")
        time.sleep(0.05)
    _STARTED[proc.pid] = proc
    _info_file(data_dir).write_text(json.dumps(info.__dict__))
    return info


def down(data_dir: Path, timeout: float = 30.0) -> bool:
    """Stops the devnet cleanly (anvil dumps its state on SIGTERM). Returns False if none was running."""
    path = _info_file(data_dir)
    if not path.is_file():
        return False
    info = DevnetInfo(**json.loads(path.read_text()))
    if _alive(info.pid):
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(info.pid):
            if time.monotonic() > deadline:
                raise DevnetError(f"anvil (pid {info.pid}) did not stop within {timeout:.0f}s; state may be stale")
            time.sleep(0.05)
    path.unlink(missing_ok=True)
    return True


def kill_hard(data_dir: Path) -> None:
    """SIGKILL, as a crash would: whatever happened since the last periodic state dump is lost."""
    path = _info_file(data_dir)
    if path.is_file():
        info = DevnetInfo(**json.loads(path.read_text()))
        if _alive(info.pid):
            os.kill(info.pid, signal.SIGKILL)
            while _alive(info.pid):
                time.sleep(0.02)
        path.unlink(missing_ok=True)
