"""The `${...}` grammar, in one place, so validation and interpolation agree on it.

`${name}` or `${name.key}` (a parameter or variable, or a step's own output in its
validations), `${steps.<id>.<output>}`, `${env.NAME}`, `${secret:NAME}`; a `raw:` prefix
(`${raw:name}`) opts out of shell quoting; `$${` is a literal `${`.
"""
from __future__ import annotations

import re
from typing import Literal, NamedTuple

from services.errors import PlaybookError

ReferenceKind = Literal["name", "step", "env", "secret"]

_OPEN = re.compile(r"\$\$\{|\$\{")
_KEY = r"[A-Za-z0-9_-]+"
_FORMS: list[tuple[str, ReferenceKind, re.Pattern[str]]] = [  # (prefix, kind, whole body); first prefix wins
    ("steps.", "step", re.compile(rf"steps\.(?P<step>[A-Za-z_][A-Za-z0-9_-]*)\.(?P<name>{_KEY}(?:\.{_KEY})*)")),
    ("env.", "env", re.compile(r"env\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)")),
    ("secret:", "secret", re.compile(r"secret:(?P<name>[A-Za-z0-9_./-]+)")),
    ("", "name", re.compile(rf"(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.{_KEY})*)")),
]
FORMS_HELP = "${name}, ${steps.<id>.<output>}, ${env.NAME} or ${secret:NAME} (write $${ for a literal ${)"


class Reference(NamedTuple):
    kind: ReferenceKind
    name: str  # the parameter/variable path, the step's output path, the env var or the secret name
    step_id: str | None
    output: str | None
    raw: str  # exactly as written, `${` and `}` included
    start: int
    end: int


class ReferenceSyntaxError(PlaybookError):
    """A `${` that does not form a reference; `position` is its offset in the text."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


def find_references(text: str) -> list[Reference]:
    """Every reference in `text`, in order; raises `ReferenceSyntaxError` at the first malformed one."""
    if "${" not in text:
        return []
    found: list[Reference] = []
    position = 0
    while opening := _OPEN.search(text, position):
        if opening.group() == "$${":
            position = opening.end()
            continue
        close = text.find("}", opening.end())
        if close == -1:
            raise ReferenceSyntaxError(
                f"'${{' at offset {opening.start()} is never closed by '}}'; write $${{ for a literal ${{",
                opening.start())
        found.append(_parse(text[opening.start():close + 1], opening.start()))
        position = close + 1
    return found


def _parse(raw: str, start: int) -> Reference:
    body = raw[2:-1].strip()
    if body.startswith("raw:"):
        body = body[4:].strip()
    for prefix, kind, pattern in _FORMS:  # noqa: B007 - the form found is used after the loop
        if body.startswith(prefix):
            break
    if match := pattern.fullmatch(body):
        step = match.groupdict().get("step")
        return Reference(kind, match["name"], step, match["name"] if step else None, raw, start, start + len(raw))
    raise ReferenceSyntaxError(f"{raw} is not a reference; use {FORMS_HELP}", start)
