"""Money is integer fen everywhere; this is the one place it becomes yuan text for people."""

from __future__ import annotations


def yuan(fen: int) -> str:
    """12345678 -> '¥123,456.78' (exact: no floats)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"
