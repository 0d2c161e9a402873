"""Numbers a run can keep: finite everywhere, and waits that the clock and a NATS timer can hold.

JSON has no infinity or NaN: stored with a run, they come back as null and its playbook no longer decodes, so
every service reading the run fails on it. A wait of centuries overflows the clock, and a NATS timer due past
Go's ~292-year duration fires at once.
"""
from __future__ import annotations

import math
from typing import Any

import msgspec

from events.playbook import Playbook
from services.playbook.diagnostics import Issue, Path

MAX_WAIT_SECONDS = 366 * 24 * 3600     # a year and a day: the longest timeout, delay or open breaker we take
TIMEOUTS = frozenset({"timeout_seconds", "open_seconds"})    # a time limit: more than 0
DELAYS = frozenset({"base_delay", "max_delay"})              # a pause: 0 is at once


def number_issues(playbook: Playbook) -> list[Issue]:
    """PB104 for each number that is not finite, and each wait that is not a time this engine can count."""
    issues: list[Issue] = []
    _walk(playbook, (), issues)
    return issues


def _walk(value: Any, path: Path, issues: list[Issue]) -> None:
    if isinstance(value, msgspec.Struct):
        for field in msgspec.structs.fields(value):
            _walk(getattr(value, field.name), (*path, field.encode_name), issues)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, (*path, str(key)), issues)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, (*path, i), issues)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if problem := _problem(value, path[-1] if path else ""):
            issues.append(Issue("PB104", f"'{_place(path)}' is {value:g}; it must be {problem}", path))


def _place(path: Path) -> str:
    """`retry.base_delay`, `rollback[0].timeout_seconds`: the path within its step (or handler)."""
    within = path[2:] if len(path) > 2 and path[0] in ("steps", "error_handlers") else path
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in within).lstrip(".")


def _problem(value: float, name: str | int) -> str | None:
    if not math.isfinite(value):
        return "a finite number (JSON, where runs are kept, has no infinity or NaN)"
    if name in TIMEOUTS and not 0 < value <= MAX_WAIT_SECONDS:
        return (f"more than 0 and at most {MAX_WAIT_SECONDS} seconds (366 days)"
                + (" (leave it out for no limit)" if name == "timeout_seconds" and value == 0 else ""))
    if name in DELAYS and not 0 <= value <= MAX_WAIT_SECONDS:
        return f"from 0 to {MAX_WAIT_SECONDS} seconds (366 days)"
    return None
