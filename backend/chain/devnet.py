"""Runs the local permissioned devnet in the background, state in a folder: the supervisor process of
`backend.chain.node` (a private anvil behind a permissioned gateway on 127.0.0.1).

Each devnet has its own chain id, chosen at random when its folder is new, so that a consent signed for one
ledger can never be replayed on another. Free gas; blocks only while transactions wait (at most one per
`block_time`), or one per transaction (`block_time=None`, for tests).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from backend.chain.node import permissions
from backend.paths import PROJECT_ROOT

HOST = "127.0.0.1"
DEFAULT_PORT = 8545
DEFAULT_BLOCK_TIME = 0.25
_STARTED: dict[int, subprocess.Popen[bytes]] = {}  # kept referenced so they are reaped on `down`


class DevnetError(Exception):
    """The devnet could not be started, reached or stopped; the message says what to do."""


@dataclass(frozen=True)
class DevnetInfo:
    pid: int
    port: int
    chain_id: int
    block_time: float | None
    unsafe: bool = False

    @property
    def rpc_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As a listening server binds: a port whose last connections are in TIME_WAIT is free for it.
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


def token(data_dir: Path) -> str | None:
    """The node token that writes and `perm_*` calls carry; None when this folder has no devnet."""
    return permissions.read_token(data_dir.resolve())


def auth_headers(data_dir: Path) -> dict[str, str]:
    value = token(data_dir)
    return {"Authorization": f"Bearer {value}"} if value else {}


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
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def rpc_chain_id(url: str, timeout: float = 2.0) -> int | None:
    """The node's chain id, or None if nothing answers at `url`."""
    try:
        r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=timeout)
        return int(r.json()["result"], 16)
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def _read_info(data_dir: Path) -> DevnetInfo | None:
    path = _info_file(data_dir)
    return DevnetInfo(**json.loads(path.read_text())) if path.is_file() else None


def status(data_dir: Path) -> DevnetInfo | None:
    """The devnet running for `data_dir`, or None (a stale record is removed)."""
    info = _read_info(data_dir)
    if info is None:
        return None
    if not _alive(info.pid):
        _info_file(data_dir).unlink(missing_ok=True)
        return None
    return info  # alive: ours, answering or about to


def chain_id_for(data_dir: Path) -> int:
    """This folder's chain id: the one its ledger was deployed on, else the one chosen when it was new."""
    record = data_dir / "node" / "chain.json"
    if record.is_file():
        return int(json.loads(record.read_text())["chain_id"])
    deployment = data_dir / "deployment.json"
    if deployment.is_file():
        chain_id = int(json.loads(deployment.read_text())["chain_id"])
    else:
        chain_id = 1_000_000 + secrets.randbelow(2**31 - 1_000_000)  # far from public chains' ids
    record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    permissions.write_private(record, json.dumps({"chain_id": chain_id}) + "\n")
    return chain_id


def up(
    data_dir: Path,
    *,
    port: int = DEFAULT_PORT,
    block_time: float | None = DEFAULT_BLOCK_TIME,
    unsafe: bool = False,
    open_node: bool = False,
    ready_timeout: float = 40.0,
) -> DevnetInfo:
    """Starts the devnet for `data_dir` in the background (or returns the one already running).

    `port=0` picks a free port; a taken port is refused with a message rather than silently replaced.
    `unsafe` answers development methods (time travel, snapshots): for tests and the demo's own devnet only.
    """
    data_dir = data_dir.resolve()  # absolute: the supervisor runs inside the data folder
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
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
    chain_id = chain_id_for(data_dir)
    args = [sys.executable, "-m", "backend.chain.node.supervisor", "--data-dir", str(data_dir),
            "--port", str(port), "--chain-id", str(chain_id)]  # fmt: skip
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    args += ["--unsafe"] * unsafe + ["--open-node"] * open_node
    log_path = data_dir / "devnet.log"
    offset = log_path.stat().st_size if log_path.is_file() else 0
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        # A session of its own: the devnet outlives the command that started it and ignores its Ctrl-C.
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=PROJECT_ROOT)  # fmt: skip
    info = DevnetInfo(pid=proc.pid, port=port, chain_id=chain_id, block_time=block_time, unsafe=unsafe)
    deadline = time.monotonic() + ready_timeout
    while rpc_chain_id(info.rpc_url, timeout=0.5) != chain_id:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()  # reaped: no zombie, no "still running" ResourceWarning
            tail = log_path.read_bytes()[offset:].decode(errors="replace")[-900:]
            errors = [line.removeprefix("error: ") for line in tail.splitlines() if line.startswith("error: ")]
            raise DevnetError(errors[-1] if errors else f"the devnet did not start; devnet.log ends:\n{tail}")
        time.sleep(0.05)
    _STARTED[proc.pid] = proc
    permissions.write_private(_info_file(data_dir), json.dumps(asdict(info)))
    return info


def dump_now(data_dir: Path, timeout: float = 60.0) -> None:
    """Has the running devnet write a dump of its state now (SIGUSR1), and waits until it is on disk."""
    info = _read_info(data_dir.resolve())
    if info is None or not _alive(info.pid):
        raise DevnetError(f"no devnet runs for {data_dir}")
    marker = data_dir.resolve() / "node" / "dumped"
    before = marker.stat().st_mtime_ns if marker.is_file() else 0
    os.kill(info.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not marker.is_file() or marker.stat().st_mtime_ns == before:
        if time.monotonic() > deadline or not _alive(info.pid):
            raise DevnetError(f"the devnet for {data_dir} did not dump its state within {timeout:.0f}s")
        time.sleep(0.05)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise DevnetError(f"the devnet (pid {pid}) did not stop within {timeout:.0f}s; state may be stale")
        time.sleep(0.05)


def down(data_dir: Path, timeout: float = 60.0) -> bool:
    """Stops the devnet cleanly (a last dump of its state first). Returns False if none was running."""
    info = _read_info(data_dir)
    if info is None:
        return False
    if _alive(info.pid):
        os.kill(info.pid, signal.SIGTERM)
        _wait_gone(info.pid, timeout)
    _info_file(data_dir).unlink(missing_ok=True)
    return True


def kill_hard(data_dir: Path) -> None:
    """SIGKILL of the whole devnet, as a crash would: what happened since the last dump is lost."""
    info = _read_info(data_dir)
    if info is not None and _alive(info.pid):
        os.kill(info.pid, signal.SIGKILL)
        _wait_gone(info.pid, 10)
        _wait_node_gone(data_dir)
    _info_file(data_dir).unlink(missing_ok=True)


def kill_node(data_dir: Path) -> int:
    """SIGKILL of the private anvil alone (its supervisor restarts it from the last good dump); its pid."""
    pid = int((data_dir / "node" / "anvil.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    return pid


def _wait_node_gone(data_dir: Path) -> None:
    pid_file = data_dir / "node" / "anvil.pid"
    if pid_file.is_file():
        pid = int(pid_file.read_text())
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
