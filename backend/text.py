"""Free text the ledger keeps (names, regions, reasons, references) ends up in exports, consoles and terminals:
it must not hold characters that are invisible or that change how the text around them is shown."""

from __future__ import annotations

import unicodedata

# Cc: controls (NUL, ESC of ANSI sequences); Cf: format characters (zero-width spaces and joiners, the RTL override
# U+202E, the BOM); Cs: lone surrogates (cannot even be stored as UTF-8); Co: private use; Zl, Zp: line and
# paragraph separators. Ordinary and ideographic spaces (Zs) stay allowed.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def unsafe_character(text: str) -> str | None:
    """The first character of `text` that free text must not hold, written U+XXXX (never the character itself,
    so an error naming it cannot carry it), or None when there is none."""
    if text.isprintable():  # every unsafe category is unprintable: the common case costs one C loop
        return None
    for char in text:
        if unicodedata.category(char) in UNSAFE_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None
