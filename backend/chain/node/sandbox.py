"""Starts anvil where nothing but its owner can reach it: in a network namespace of its own, answering only on
an IPC socket in an owner-only folder.

anvil always opens an HTTP port and obeys development methods from anyone who reaches it. Inside a fresh
network namespace that port exists only for anvil itself; the Unix socket, a file, still serves the owner.
The child also dies with the process that started it (PR_SET_PDEATHSIG), so a killed supervisor never leaves
an orphaned node holding the state.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import struct
import subprocess
from pathlib import Path

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


class SandboxError(Exception):
    """The node could not be started privately; the message says what to do."""


def _enter_private_network() -> None:
    """Runs in the child between fork and exec: a user + network namespace with only loopback, brought up."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    # Map ourselves to root inside the namespace: needed to bring the loopback interface up.
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start(args: list[str], *, log: Path, cwd: Path, private: bool) -> subprocess.Popen[bytes]:
    """Starts `args` (anvil and its flags). `private=False` is the explicit, unsafe development fallback."""
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
        try:
            return subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                preexec_fn=_enter_private_network if private else _die_with_parent,
            )
        except subprocess.SubprocessError as exc:
            raise SandboxError(
                "this machine does not allow a private network namespace for the node "
                f"({exc}; user namespaces may be disabled, e.g. kernel.unprivileged_userns_clone=0). "
                "Enable user namespaces, or accept an open development node reachable by every local "
                "process with `voucher devnet up --open-node`"
            ) from None
