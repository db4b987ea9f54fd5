"""Invoice numbers and the hash the contract keeps against double subsidy.

One invoice must give one hash however it is typed: fullwidth digits (２５２２) are the same digits, and an invisible
character must not make a "new" invoice. So a number is read in Unicode compatibility form (NFKC), upper-cased,
stripped of the spaces and hyphens people group digits with, and must then be digits and Latin letters only.
"""

from __future__ import annotations

import re
import unicodedata

from backend.chain.hashing import keccak
from backend.errors import InvalidInvoiceNumber

_SEPARATORS = str.maketrans("", "", " -")
_CANONICAL = re.compile(r"[0-9A-Z]+")


def canonical(invoice_number: str) -> str:
    """The invoice number as it is hashed and kept, or InvalidInvoiceNumber naming the first character refused."""
    number = unicodedata.normalize("NFKC", invoice_number).upper().translate(_SEPARATORS)
    if _CANONICAL.fullmatch(number):
        return number
    bad = next((c for c in number if not ("0" <= c <= "9" or "A" <= c <= "Z")), None)
    raise InvalidInvoiceNumber(f"U+{ord(bad):04X}" if bad is not None else None)


def invoice_hash(invoice_number: str) -> str:
    """keccak256 of the canonical number: the same as before for numbers that were already canonical."""
    return "0x" + keccak(f"invoice:{canonical(invoice_number)}").hex()
