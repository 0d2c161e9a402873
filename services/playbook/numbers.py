"""Numbers a run can keep: finite, wherever they are written (args, variables, defaults, version).

JSON has no infinity or NaN: stored with a run, they come back as null, its playbook no longer decodes, and every
service reading the run fails on it. Keys with bounds of their own (services/playbook/bounds.py, the Structs'
constraints) are left to those, so one mistake is told once.
"""
from __future__ import annotations

import math
from typing import Any

import msgspec

from events.playbook import Playbook
from services.playbook.diagnostics import Issue, Path

BOUNDED = frozenset({"timeout_seconds", "base_delay", "max_delay", "open_seconds", "failure_rate", "min_free_gb",
                     "min_free_percent", "max_used_percent"})


def number_issues(playbook: Playbook) -> list[Issue]:
    """PB104 for each number that is not finite, outside the keys bounded elsewhere."""
    issues: list[Issue] = []
    _walk(playbook, (), issues)
    return issues


def _walk(value: Any, path: Path, issues: list[Issue]) -> None:
    if isinstance(value, msgspec.Struct):
        for field in msgspec.structs.fields(value):
            if field.encode_name not in BOUNDED:
                _walk(getattr(value, field.name), (*path, field.encode_name), issues)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, (*path, str(key)), issues)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, (*path, i), issues)
    elif isinstance(value, float) and not math.isfinite(value):
        issues.append(Issue("PB104", f"'{_place(path)}' is {value:g}; it must be a finite number (JSON, where runs "
                                     "are kept, has no infinity or NaN)", path))


def _place(path: Path) -> str:
    """`args.outputs.ratio`, `parameters[0].default`: the path within its step (or handler)."""
    within = path[2:] if len(path) > 2 and path[0] in ("steps", "error_handlers") else path
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in within).lstrip(".")
