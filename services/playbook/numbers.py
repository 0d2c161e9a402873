"""Numbers a run can keep: finite, wherever they are written (args, variables, defaults, version).

JSON has no infinity or NaN: stored with a run, they come back as null, its playbook no longer decodes, and every
service reading the run fails on it. Keys with bounds of their own (services/playbook/bounds.py, the Structs'
constraints) are left to those, so one mistake is told once.
"""
from __future__ import annotations

import functools
import math
import types
import typing
from collections.abc import Iterable
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
    items: Iterable[tuple[str | int, Any]]
    if isinstance(value, msgspec.Struct):
        items = ((encoded, getattr(value, name)) for name, encoded in _fields(type(value)))
    elif isinstance(value, dict):
        items = ((str(key), item) for key, item in value.items())
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                at = (*path, key)
                issues.append(Issue("PB104", f"'{_place(at)}' is {item:g}; it must be a finite number (JSON, where "
                                             "runs are kept, has no infinity or NaN)", at))
        elif kind not in _LEAVES:      # most of a playbook is text: nothing below it to walk
            _walk(item, (*path, key), issues)


_LEAVES = frozenset({str, int, bool, type(None)})


@functools.cache
def _fields(kind: type[msgspec.Struct]) -> tuple[tuple[str, str], ...]:
    """A Struct's (attribute, key) pairs that may hold a float, once per class: a playbook of 10,000 steps has
    hundreds of thousands of fields, nearly all of them text, flags or names."""
    hints = typing.get_type_hints(kind)
    return tuple((name, encoded) for name, encoded in zip(kind.__struct_fields__, kind.__struct_encode_fields__)
                 if encoded not in BOUNDED and _may_hold_float(hints[name]))


def _may_hold_float(hint: Any) -> bool:
    if hint in _LEAVES:
        return False
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return False
    if origin in (list, tuple, set, frozenset, typing.Union, types.UnionType):
        return any(_may_hold_float(arg) for arg in typing.get_args(hint) if arg is not Ellipsis)
    if origin is dict:
        return _may_hold_float(typing.get_args(hint)[1])
    return True     # a float, a Struct, Any: walked


def _place(path: Path) -> str:
    """`args.outputs.ratio`, `parameters[0].default`: the path within its step (or handler)."""
    within = path[2:] if len(path) > 2 and path[0] in ("steps", "error_handlers") else path
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in within).lstrip(".")
