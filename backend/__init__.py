"""The Compute Voucher Ledger service: managed accounts, issuance, redemption and audit on an EVM chain."""

from importlib import metadata

DISTRIBUTION = "compute-voucher-ledger"  # the project's name in pyproject.toml


def version() -> str:
    """The installed package's version; "unknown" for a source tree that was never installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
