"""A backup holds the master key, so it is never written in clear: the archive is sealed with a key derived from
the operator's passphrase (scrypt) under AES-256-GCM, in 1 MiB chunks so that no size is too large for the
cipher. Each chunk's nonce carries its index and a last-chunk flag, and every chunk authenticates the header:
a changed, reordered, truncated or extended backup is refused, never half-restored.

Layout: MAGIC | version, log2(N), r, p | salt (16) | nonce prefix (7) | passphrase check (16) | chunks.
"""

from __future__ import annotations

import hmac
import os
import struct
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

PASSPHRASE_ENV = "VOUCHER_BACKUP_PASSPHRASE"
MIN_PASSPHRASE = 12
MAGIC = b"CVLBACKUP"
VERSION = 2
LOG2_N, R, P = 17, 8, 1  # scrypt at 128 MiB and about a second: OWASP's recommendation
MAX_LOG2_N = 20  # a forged header cannot make restore spend more than 1 GiB on the KDF
CHUNK = 1 << 20
TAG = 16
_PARAMS = struct.Struct(">BBBB")
HEADER_SIZE = len(MAGIC) + _PARAMS.size + 16 + 7 + 16


class BackupError(Exception):
    """The backup or restore cannot go ahead; the message says why and what to do."""


def read_passphrase(file: Path | None) -> bytes:
    """The passphrase from `file` (its first line) or from VOUCHER_BACKUP_PASSPHRASE; never from an argument,
    which every user could read in the process list."""
    if file is not None:
        try:
            if file.stat().st_mode & 0o077:
                raise BackupError(f"{file} is readable by other users: run `chmod 600 {file}`")
            text = file.read_bytes().split(b"\n", 1)[0].rstrip(b"\r")
        except OSError as exc:
            raise BackupError(f"the passphrase file {file} cannot be read ({exc.strerror})") from None
    else:
        text = os.environ.get(PASSPHRASE_ENV, "").encode()
    if not text:
        raise BackupError(
            f"backups are encrypted: set {PASSPHRASE_ENV} or give --passphrase-file FILE (a file only you can read)"
        )
    return text


def check_strength(passphrase: bytes) -> None:
    if len(passphrase.decode(errors="replace")) < MIN_PASSPHRASE:
        raise BackupError(f"the backup passphrase must have at least {MIN_PASSPHRASE} characters")


def _keys(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> tuple[AESGCM, bytes]:
    derived = Scrypt(salt=salt, length=48, n=1 << log2_n, r=r, p=p).derive(passphrase)
    return AESGCM(derived[:32]), derived[32:]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, last)


def seal(data: bytes, passphrase: bytes, out: BinaryIO) -> None:
    """Writes `data` to `out`, encrypted and authenticated under `passphrase`."""
    salt, prefix = os.urandom(16), os.urandom(7)
    aead, check = _keys(passphrase, salt, LOG2_N, R, P)
    header = MAGIC + _PARAMS.pack(VERSION, LOG2_N, R, P) + salt + prefix + check
    out.write(header)
    count = max(1, -(-len(data) // CHUNK))
    if count >= 1 << 32:
        raise BackupError("the backup is too large to encrypt in one archive")
    for index in range(count):
        chunk = data[index * CHUNK : (index + 1) * CHUNK]
        out.write(aead.encrypt(_nonce(prefix, index, index == count - 1), chunk, header))


def unseal(src: BinaryIO, passphrase: bytes, name: object) -> bytes:
    """The plaintext of a sealed archive; BackupError for a wrong passphrase or any changed byte."""
    header = src.read(HEADER_SIZE)
    if not header.startswith(MAGIC):
        old = header.startswith(b"\x1f\x8b")  # gzip: a backup written before backups were encrypted
        raise BackupError(
            f"{name} is an unencrypted backup from an older version: refusing it (anyone could have written it)"
            if old
            else f"{name} is not a ledger backup"
        )
    if len(header) < HEADER_SIZE:
        raise BackupError(f"{name} is cut short: refusing a damaged backup")
    version, log2_n, r, p = _PARAMS.unpack_from(header, len(MAGIC))
    if version != VERSION:
        raise BackupError(f"{name} is in backup format {version}; this version reads format {VERSION}")
    if not (10 <= log2_n <= MAX_LOG2_N and 1 <= r <= 32 and 1 <= p <= 16):
        raise BackupError(f"{name} has a damaged header: refusing it")
    start = len(MAGIC) + _PARAMS.size
    salt, prefix, check = header[start : start + 16], header[start + 16 : start + 23], header[start + 23 :]
    aead, expected = _keys(passphrase, salt, log2_n, r, p)
    if not hmac.compare_digest(expected, check):
        raise BackupError(f"the passphrase does not open {name} (or its header was changed)")
    parts, index, block = [], 0, src.read(CHUNK + TAG)
    while True:
        following = src.read(CHUNK + TAG)
        try:
            parts.append(aead.decrypt(_nonce(prefix, index, not following), block, header))
        except InvalidTag:
            raise BackupError(f"{name} was changed or damaged after it was written: refusing it") from None
        if not following:
            return b"".join(parts)
        index, block = index + 1, following
