"""What every action shares: its result, its arg errors, its registry entry, arg readers."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from events.run import ErrorCategory
from services.playbook.actions import ActionSpec
from services.secrets import Redactor


class ActionResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a step attempt produced; `category` hints the resilience classifier on failure."""

    ok: bool
    outputs: dict[str, Any] = {}
    error: str = ""
    category: ErrorCategory | Literal[""] = ""


# Where an action sends its output while it runs (fd 1 or 2, raw bytes), if anyone listens.
live_output: ContextVar[Callable[[int, bytes], None] | None] = ContextVar("live_output", default=None)
# Where an action cut off by its timeout leaves what it had produced, so that the failure keeps it.
cut_off_outputs: ContextVar[dict[str, Any] | None] = ContextVar("cut_off_outputs", default=None)


class ActionArgsError(ValueError):
    """An arg the rules accepted that the library still cannot take; the message names the arg."""


@dataclass(frozen=True, slots=True)
class Action:
    """One entry of the registry: how to run the action; which args it takes is the language's (`spec`).

    `run` gets args `spec` has accepted, resolved: it reads them without checking them again.
    """

    run: Callable[[dict[str, Any]], Awaitable[ActionResult]]
    spec: ActionSpec


def arg(args: dict[str, Any], name: str, default: Any = None) -> Any:
    """The arg's value; absent or null gives `default`."""
    value = args.get(name)
    return default if value is None else value


def text(value: Any) -> str:
    """A scalar as the text a process or a server receives (YAML gives ints and bools too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def text_map(args: dict[str, Any], name: str) -> dict[str, str] | None:
    """A mapping arg (env, headers, params) with its values as text."""
    mapping = args.get(name)
    return None if mapping is None else {str(key): text(value) for key, value in mapping.items()}


def text_list(args: dict[str, Any], name: str) -> list[str] | None:
    """A list arg (argv) with its items as text."""
    items = args.get(name)
    return None if items is None else [text(item) for item in items]


def cut_before_secret(text: str, redactor: Redactor | None, limit: int | None = None) -> str:
    """The head of `text` (at most `limit` characters) that does not end inside a secret, in any of its forms."""
    head = text if limit is None else text[:limit]
    return head[:redactor.safe_end(head)] if redactor else head
