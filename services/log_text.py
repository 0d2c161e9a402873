"""User text in logs stays on its line: control and line-breaking characters are shown escaped.

An actor, a reason, a comment or a step id can hold a newline; written as is, it would
start a line that looks like the engine's own (a forged entry). Every log record of an
engine process passes through `EscapedLines` (installed by the composition root), so no
call site has to remember; `escaped` is the one spelling of the rule. It also clips a line
past `MOST_CHARS`: text a caller sent, quoted in an error, cannot make one a megabyte.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging      # not loaded: the CLI escapes what it prints with this module, and logs nothing

# C0 and C1 controls, DEL, line and paragraph separators, and the bidirectional overrides
# and isolates that can make a line read differently from what it holds.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A log line's most characters: what a caller sent can be quoted in one (an error naming a value it refused), and a
# megabyte a line would be a flood; a traceback the message carries still fits.
MOST_CHARS = 8192


def clipped(text: str, most: int = MOST_CHARS) -> str:
    """At most `most` characters of `text`, saying how many more there were."""
    return text if len(text) <= most else f"{text[:most]}... ({len(text) - most:,} more characters)"


def escaped(text: str) -> str:
    """`text` on one line: `\\n`, `\\r`, `\\t`, and `\\xNN` or `\\uNNNN` for any other such character."""
    return _UNSAFE.sub(_escape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


class EscapedLines:
    """A handler filter (logging takes any object with a `filter` method): each record's message, arguments
    filled in, is escaped (its traceback is not)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = clipped(escaped(message))
        if safe != message:
            record.msg, record.args = safe, None
        return True


def kinds_said(kinds: Iterable[str]) -> str:
    """Event kinds in the order they first came, each once with how many (`StepScheduled x1000`): a command that
    schedules a wide wave is one short line, in a log or on a terminal, not one word per event."""
    counts = Counter(kinds)
    return ", ".join(kind if n == 1 else f"{kind} x{n}" for kind, n in counts.items())
