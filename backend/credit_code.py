"""China's unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters, the last a check digit."""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def check_char(first17: str) -> str:
    total = sum(ALPHABET.index(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def problem(code: str) -> str | None:
    """Why `code` is not a valid credit code, or None if it is."""
    if len(code) != 18:
        return f"a unified social credit code has 18 characters, not {len(code)}"
    bad = sorted({c for c in code if c not in ALPHABET})
    if bad:
        return f"characters {''.join(bad)!r} cannot appear in a unified social credit code"
    if check_char(code[:17]) != code[17]:
        return "the check character (the 18th) does not match: the code is mistyped"
    return None


def with_check(first17: str) -> str:
    """The full code for 17 given characters (used for demo data and tests)."""
    return first17 + check_char(first17)
