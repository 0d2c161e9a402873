"""What surrounds an action: resolving its arguments, exporting outputs, validations."""
from __future__ import annotations

import re
from typing import Any

from events.playbook import Condition, OutputSpec
from services.errors import PlaybookError, UnresolvedReference
from services.playbook.conditions import condition_text, evaluate
from services.playbook.interpolate import Context, resolve, resolve_shell

_PATH_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def resolve_args(action: str, raw: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """An action's args with every reference resolved; shell commands get quoted values."""
    args: dict[str, Any] = resolve({key: value for key, value in raw.items() if key != "command"}, ctx)
    if "command" in raw:
        command = raw["command"]
        shell = action == "shell" and isinstance(command, str)
        args["command"] = resolve_shell(command, ctx) if shell else resolve(command, ctx)
    return args


def export_outputs(specs: list[OutputSpec], outputs: dict[str, Any]) -> dict[str, Any]:
    """Add each `outputs:` entry to the step's outputs under its own name."""
    exported = dict(outputs)
    for spec in specs:
        exported[spec.name] = _extract(spec.from_, outputs)
    return exported


def _extract(source: str, outputs: dict[str, Any]) -> Any:
    """`stdout`, `json.items[0].name` or JSONPath-like `$.items[0].name` (into `json`)."""
    path = source.strip()
    value: Any = outputs
    if path.startswith("$"):
        value, path = outputs.get("json"), path[1:]
        if value is None:
            raise UnresolvedReference(f"output {source!r}: the step produced no JSON body")
    for key, index in _PATH_TOKEN.findall(path):
        try:
            value = value[int(index)] if index else value[key]
        except (KeyError, IndexError, TypeError):
            raise UnresolvedReference(f"output {source!r}: no {key or index!r} in the step's outputs") from None
    return value


def failed_validation(validations: list[Condition], ctx: Context) -> str | None:
    """The first post-step validation that does not hold, described; None if all hold."""
    for condition in validations:
        try:
            if not evaluate(condition, ctx):
                return condition.message or f"validation failed: {condition_text(condition, ctx)}"
        except PlaybookError as err:
            return f"validation could not be evaluated: {err}"
    return None
