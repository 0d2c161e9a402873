"""`${...}` interpolation: parameters, variables, step outputs, environment, secrets.

A value that is exactly one reference keeps its type (`${replicas}` stays an int);
references inside longer text are rendered as text. In shell commands every inserted
value is written as exactly its text for the place it lands (shell_words.py), so a parameter
can never become shell syntax; `${raw:name}` is the visible opt-out. `$${` is a literal `${`.
"""
from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.errors import UnresolvedReference
from services.playbook.references import Reference, find_references
from services.playbook.shell_words import ShellPlaces



@dataclass
class Context:
    """What references can see. `local` holds the step's own outputs (for validations)."""

    parameters: Mapping[str, Any] = field(default_factory=dict)
    variables: Mapping[str, Any] = field(default_factory=dict)
    steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    local: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] | None = None
    secrets: Callable[[str], str | None] | None = None
    used_secrets: set[str] = field(default_factory=set)
    _resolving: set[str] = field(default_factory=set)


def resolve(value: Any, ctx: Context) -> Any:
    """Resolve every reference inside a value (str, list or dict, recursively)."""
    if isinstance(value, str):
        return _resolve_text(value, ctx, quote=None)
    if isinstance(value, list):
        return [resolve(item, ctx) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item, ctx) for key, item in value.items()}
    return value


def resolve_shell(command: str, ctx: Context) -> str:
    """Resolve a shell command, inserting every value as one quoted shell word."""
    return _resolve_text(command, ctx, quote=shlex.quote)


def value_of(ref: Reference, ctx: Context) -> Any:
    """The value one reference stands for."""
    match ref.kind:
        case "secret":
            return _secret(ref.name, ctx)
        case "env":
            if ctx.env is None or ref.name not in ctx.env:
                raise UnresolvedReference(f"{ref.raw}: environment variable {ref.name!r} is not available to playbooks")
            return ctx.env[ref.name]
        case "step":
            if ref.step_id not in ctx.steps:
                raise UnresolvedReference(
                    f"{ref.raw}: step {ref.step_id!r} has no outputs (it was skipped or has not run)")
            return _walk(ctx.steps[ref.step_id], ref.name, ref.raw)
    head, _, rest = ref.name.partition(".")
    for scope in (ctx.local, ctx.parameters):
        if head in scope:
            return _walk(scope[head], rest, ref.raw)
    if head in ctx.variables:
        return _walk(_variable(head, ctx), rest, ref.raw)
    raise UnresolvedReference(f"{ref.raw}: no parameter, variable or output named {head!r}")


def _resolve_text(text: str, ctx: Context, quote: Callable[[str], str] | None) -> Any:
    if "${" not in text:
        return text
    refs = find_references(text)
    if quote is None and len(refs) == 1 and refs[0].start == 0 and refs[0].end == len(text):
        return value_of(refs[0], ctx)   # a whole-value reference keeps its type
    pieces, position = [], 0
    places = ShellPlaces() if quote is not None else None
    for ref in refs:
        pieces.append(_literal(text[position:ref.start]))
        value = _as_text(value_of(ref, ctx))
        raw = ref.raw[2:].lstrip().startswith("raw:")
        if places is not None:
            places.read(pieces[-1])
            if raw:
                places.read(value)
            else:
                value = places.insert(value, ref.raw)
        pieces.append(value)
        position = ref.end
    pieces.append(_literal(text[position:]))
    return "".join(pieces)


def _literal(text: str) -> str:
    return text.replace("$${", "${")


def _variable(name: str, ctx: Context) -> Any:
    if name in ctx._resolving:
        raise UnresolvedReference(f"${{{name}}}: variable refers to itself")
    ctx._resolving.add(name)
    try:
        return resolve(ctx.variables[name], ctx)
    finally:
        ctx._resolving.discard(name)


def _secret(name: str, ctx: Context) -> str:
    value = ctx.secrets(name) if ctx.secrets else None
    if value is None:
        raise UnresolvedReference(f"${{secret:{name}}}: no secret named {name!r} in the engine's secret source")
    ctx.used_secrets.add(value)
    return value


def _walk(value: Any, path: str, expr: str) -> Any:
    for key in path.split(".") if path else ():
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdecimal() and len(key) <= 18 and int(key) < len(value):
            value = value[int(key)]
        else:
            raise UnresolvedReference(f"{expr}: no {key!r} in the value")
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)

