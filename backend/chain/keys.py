"""Key files on disk: created once with fresh randomness, readable by the owner only (mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from backend.private_files import check_owner_only, private_dir


def load_or_create_key(path: Path) -> LocalAccount:
    """The account whose private key is stored at `path`, generated on first use.

    A key file others can read is refused (ConfigError saying `chmod 600`), as the master key is. The key is
    never printed; callers get an account object whose repr shows only the address.
    """
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        check_owner_only(path)
        existing: LocalAccount = Account.from_key(path.read_text().strip())
        return existing
    account: LocalAccount = Account.create()
    with os.fdopen(fd, "w") as f:
        f.write(account.key.hex())
    return account
