"""What every action shares: its result, its arg errors, its registry entry, arg readers."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from events.run import ErrorCategory
from services.secrets import Redactor


class ActionResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a step attempt produced; `category` hints the resilience classifier on failure."""

    ok: bool
    outputs: dict[str, Any] = {}
    error: str = ""
    category: ErrorCategory | Literal[""] = ""


# Where an action sends its output while it runs (fd 1 or 2, raw bytes), if anyone listens.
live_output: ContextVar[Callable[[int, bytes], None] | None] = ContextVar("live_output", default=None)


class ActionArgsError(ValueError):
    """An arg has the wrong type or value; the message names the arg."""


def _no_rules(args: dict[str, Any]) -> list[str]:
    return []


@dataclass(frozen=True, slots=True)
class Action:
    """One entry of the registry: how to run the action and which args it accepts.

    `args` maps each name to (required, description). `rules` checks what involves
    several args at once (one of, not both). Value checks happen at run time, since a
    value may be a `${...}` reference until the step runs.
    """

    run: Callable[[dict[str, Any]], Awaitable[ActionResult]]
    args: dict[str, tuple[bool, str]]
    rules: Callable[[dict[str, Any]], list[str]] = _no_rules
    default_timeout: float | None = None


def arg(args: dict[str, Any], name: str, kinds: tuple[type, ...], what: str, default: Any = None) -> Any:
    """The arg's value (absent or null gives `default`), refusing a value of the wrong type."""
    value = args.get(name)
    if value is None:
        return default
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ActionArgsError(f"{name!r} must be {what}, got {type(value).__name__}")
    return value


def at_least_zero(args: dict[str, Any], name: str, default: int) -> int:
    """An integer arg that counts something (bytes, items), so it cannot be negative."""
    value = arg(args, name, (int,), "an integer >= 0", default)
    if value < 0:
        raise ActionArgsError(f"{name!r} must be an integer >= 0, got {value}")
    return value


def text(name: str, value: Any) -> str:
    """A scalar as the text a process or a server receives (YAML gives ints and bools too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ActionArgsError(f"{name!r} values must be strings or numbers, got {type(value).__name__}")


def text_map(args: dict[str, Any], name: str) -> dict[str, str] | None:
    """A mapping arg (env, headers, params) with its values as text."""
    mapping = arg(args, name, (dict,), "a mapping")
    return None if mapping is None else {str(key): text(name, value) for key, value in mapping.items()}


def text_list(args: dict[str, Any], name: str) -> list[str] | None:
    """A list arg (argv) with its items as text."""
    items = arg(args, name, (list,), "a list")
    return None if items is None else [text(name, item) for item in items]


def cut_before_secret(text: str, redactor: Redactor | None, limit: int | None = None) -> str:
    """The head of `text` (at most `limit` characters) that does not end inside a secret, in any of its forms."""
    head = text if limit is None else text[:limit]
    return head[:redactor.safe_end(head)] if redactor else head
