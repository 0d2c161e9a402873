"""Regular expressions a playbook writes (a `matches` condition, a parameter's pattern, an error handler's).

They run inside the engine's processes, over step output that may be megabytes long. Python's `re` backtracks
holding the GIL: `.*.*x` over 4 KB took a minute, stalling every service of the process. RE2 answers in time
linear in the text whatever the pattern; what it gives up (backreferences, lookaround) is refused where the
pattern is written (PB104). The `re2` binding raises on a pattern RE2 cannot compile: it never falls back to
`re`, and neither does this module.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from services.errors import PlaybookError
from services.playbook.diagnostics import short

_AROUND = "RE2 has no lookahead or lookbehind: match the text around it, or add a condition under `not`"
_BACK = "RE2 has no backreferences: write the repeated part out again"
_POSSESSIVE = "RE2 never backtracks, so it needs no possessive repeats: write `a*` for `a*+`"
_CODE = r"RE2 writes a character by its code as `\x{e9}`"
# (what RE2's error names, how to write it instead): the Python habits RE2 has no syntax for.
_HINTS = (
    (r"sequence: \Z", r"RE2 writes the end of the text `\z`"),
    *((rf"sequence: \{digit}", _BACK) for digit in "123456789"), ("operator: (?P", _BACK),
    (r"sequence: \u", _CODE), (r"sequence: \U", _CODE), (r"sequence: \N", _CODE),
    ("operator: (?=", _AROUND), ("operator: (?!", _AROUND), ("operator: (?<", _AROUND),
    ("operator: (?>", "RE2 never backtracks, so it needs no atomic groups: write `(?:...)`"),
    ("operator: *+", _POSSESSIVE), ("operator: ++", _POSSESSIVE), ("operator: ?+", _POSSESSIVE),
    ("operator: (?(", "RE2 has no conditionals: write the alternatives with `|`"),
    ("operator: (?x", "RE2 has no verbose mode: write the pattern without spaces and comments"),
    ("repetition size", "RE2 repeats a part at most 1000 times (`{1,1000}`)"),
    ("pattern too large", "it is too large for RE2: shorten it, or split it into several conditions"),
)


class BadRegex(PlaybookError):
    """A pattern RE2 cannot compile; the message says why and how to write it."""


def regex_problem(pattern: str) -> str | None:
    """Why the pattern cannot be used, or None."""
    compiled = _compiled(pattern, ignore_case=False)
    return compiled if isinstance(compiled, str) else None


def searches(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """Whether the pattern matches anywhere in the text, as `re.search` does; BadRegex if it cannot be run."""
    return _regex(pattern, ignore_case).search(_utf8(text)) is not None


def matches_whole(pattern: str, text: str) -> bool:
    """Whether the pattern matches all of the text, as `re.fullmatch` does; BadRegex if it cannot be run."""
    return _regex(pattern, False).fullmatch(_utf8(text)) is not None


def _regex(pattern: str, ignore_case: bool) -> Any:
    compiled = _compiled(pattern, ignore_case)
    if isinstance(compiled, str):
        raise BadRegex(compiled)
    return compiled


@lru_cache(maxsize=128)   # a compiled pattern is small, but RE2 may give each up to 8 MiB while it matches
def _compiled(pattern: str, ignore_case: bool) -> Any:
    """The compiled pattern, or why it is not one (kept too: a condition is evaluated again and again)."""
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False      # RE2 would print every refused pattern to the process's stderr
    try:
        return re2.compile(_utf8(pattern), options)
    except re2.error as err:
        reason = err.args[0].decode(errors="replace") if err.args and isinstance(err.args[0], bytes) else str(err)
        hint = next((f"; {hint}" for mark, hint in _HINTS if mark in reason), "")
        return f"{short(pattern)} is not a regular expression the engine can run: {reason}{hint}"


def _utf8(text: str) -> bytes:
    """RE2 reads UTF-8; a lone surrogate (JSON's `\\ud800`) is kept as its bytes, not a UnicodeEncodeError."""
    return text.encode("utf-8", "surrogatepass")
