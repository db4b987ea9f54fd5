"""The data folder holds the master key, the deployer's key and the ledger: it and everything in it are the
owner's alone (folder 0700, files 0600), whoever creates them and whatever the user's umask says."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from backend.settings import ConfigError

PRIVATE_UMASK = 0o077  # files 0600 and folders 0700, also those written by libraries and child processes


def restrict_umask() -> None:
    """Called once at the entry points that write into a data folder (`voucher serve`, `devnet`, `backup`, ...)."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """`path` as a folder only its owner can enter: created 0700, or an existing one of ours tightened to 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_mode & 0o077:
        if info.st_uid != os.geteuid() or info.st_mode & stat.S_ISVTX:
            raise ConfigError(f"{path} is a folder shared with other users: give the service a data folder of its own")
        path.chmod(0o700)
    return path


def check_owner_only(path: Path) -> None:
    """Refuses a secret file that others can read or write (as `master.key` is refused), saying the fix."""
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} is readable by other users: run `chmod 600 {path}`")


def create_private_file(path: Path) -> None:
    """Creates `path` empty and 0600 when it does not exist yet (a database file SQLite will then fill)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
