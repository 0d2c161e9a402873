"""Regular expressions a playbook writes (a `matches` condition, a parameter's pattern, an error handler's).

They run inside the engine's processes, where Python's `re` backtracks holding the GIL: `(a+)+$` on 40
characters would stop every service of the process for hours. A repetition of something that itself
repeats or branches is what makes the time exponential, so it is refused; what is left is at worst
polynomial in the text, which is bounded.
"""
from __future__ import annotations

import re
import re._parser as parser  # the parse tree `re` compiles from; no other reading of a pattern is the same
from typing import Any

from services.playbook.diagnostics import short

_REPEATS = (parser.MAX_REPEAT, parser.MIN_REPEAT)   # a possessive repeat never backtracks: not among them


def regex_problem(pattern: str) -> str | None:
    """Why the pattern may not be used, or None."""
    try:
        tree = parser.parse(pattern)
    except (re.error, OverflowError, RecursionError) as err:   # `a{99999999999}` is an OverflowError
        return f"{short(pattern)} is not a regular expression: {err}"
    if _nested(tree, repeated=False):
        return (f"{short(pattern)} repeats a part that itself repeats or has alternatives (as `(a+)+` or `(a|b)*`): "
                "on some texts it would take hours; repeat one thing, as `a+` or `[ab]*`")
    return None


def _nested(tree: Any, *, repeated: bool) -> bool:
    """Whether a repetition (`*`, `+`, `{2,}`) holds one of a varying count, or alternatives, inside it."""
    for op, av in tree:
        if op in _REPEATS:
            low, high, body = av
            if repeated and high > low:   # `(a{2})*` repeats one fixed thing; `(a?)*`, `(a+)*` do not
                return True
            if _nested(body, repeated=repeated or high > 1):
                return True
        elif op is parser.BRANCH:
            if repeated or any(_nested(branch, repeated=False) for branch in av[1]):
                return True
        elif op is parser.SUBPATTERN:
            if _nested(av[-1], repeated=repeated):
                return True
        elif op in (parser.ASSERT, parser.ASSERT_NOT):
            if _nested(av[1], repeated=repeated):
                return True
        elif op is parser.ATOMIC_GROUP or op is parser.POSSESSIVE_REPEAT:
            continue  # never backtracks into
        elif op is parser.GROUPREF_EXISTS:
            if any(part is not None and _nested(part, repeated=repeated) for part in av[1:]):
                return True
    return False
