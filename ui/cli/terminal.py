"""What steps printed cannot steer the terminal it is read on: control characters and escape sequences other
than colours are shown escaped in the CLI's text (JSON output escapes them its own way).

A step's output, or an error taken from it, may hold what a remote server sent. Written as is, `ESC[1A` moves
the cursor up to overwrite "run failed" with "run completed", `\\r` hides what came before it on the line and
`ESC]0;` retitles the window. Colours (SGR, `ESC[...m`) pass: people print them on purpose.
"""
from __future__ import annotations

import re

from services.log_text import escaped

# One character at a time: a run of controls must not swallow the ESC that starts a colour after it.
_COLOUR_OR_CONTROL = re.compile("(\x1b\\[[0-9;:]*m)|([\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e"
                                "\u2066-\u2069])")


def shown(text: str) -> str:
    """`text` as the terminal shows it: tabs, newlines and colours kept; any other control as `\\x1b`, `\\r`..."""
    return _COLOUR_OR_CONTROL.sub(lambda m: m.group(1) or escaped(m.group(2)), text)
