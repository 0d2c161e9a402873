"""Principal names: one spelling per person or agent, and no look-alikes.

A name is normalised (NFKC, case-folded, NFKC again) and must then be plain ASCII
`[a-z0-9][a-z0-9._@-]*`, at most 64 characters. NFKC folds compatibility forms (a
fullwidth "ａｌｉｃｅ" is "alice"), but no normalisation folds confusables across scripts
(a Cyrillic "а" stays Cyrillic); refusing everything outside ASCII is the only complete
rule short of a confusables table. Display names are free text and decide nothing.
"""
from __future__ import annotations

import re
import unicodedata

from services.errors import PlaybookError

NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
RESERVED = frozenset({"anonymous", "system"})   # markers in events, never a principal


class InvalidName(PlaybookError):
    pass


def normalise_name(raw: str) -> str:
    """The canonical principal name for `raw`, or InvalidName with what to write instead."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw.strip()).casefold())
    if not NAME.fullmatch(folded):
        if any(ord(char) > 127 for char in folded):
            raise InvalidName(f"{raw[:80]!r} is not a valid name: names are ASCII letters, digits and . _ @ - "
                              "(other scripts are refused so that no name can imitate another)")
        raise InvalidName(f"{raw[:80]!r} is not a valid name: use 1-64 of a-z 0-9 . _ @ -, starting with a letter "
                          "or digit")
    if folded in RESERVED:
        raise InvalidName(f"{folded!r} is reserved for the engine's own records; choose another name")
    return folded


def is_normal(name: str) -> bool:
    """True when `name` is already a canonical principal name (what the directory must hold)."""
    try:
        return normalise_name(name) == name
    except InvalidName:
        return False
