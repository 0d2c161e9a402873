"""The `${...}` grammar, in one place, so validation and interpolation agree on it.

`${name}` or `${name.key}` (a parameter or variable, or a step's own output in its
validations), `${steps.<id>.<output>}`, `${env.NAME}`, `${secret:NAME}`; a path after a name indexes
lists as `.0` or `[0]` (`json.items[0].id`); a `raw:` prefix (`${raw:name}`) opts out of shell quoting;
`$${` is a literal `${`.
"""
from __future__ import annotations

import re
from typing import Literal, NamedTuple

from services.errors import PlaybookError

ReferenceKind = Literal["name", "step", "env", "secret"]

_OPEN = re.compile(r"\$\$\{|\$\{")
_KEY = r"[A-Za-z0-9_-]+"
_PATH = rf"(?:\.{_KEY}|\[\d+\])*"     # what follows a name: `.key`, `.0` or `[0]`
_FORMS: list[tuple[str, ReferenceKind, re.Pattern[str]]] = [  # (prefix, kind, whole body); first prefix wins
    ("steps.", "step", re.compile(rf"steps\.(?P<step>[A-Za-z_][A-Za-z0-9_-]*)\.(?P<name>{_KEY}{_PATH})")),
    ("env.", "env", re.compile(r"env\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)")),
    ("secret:", "secret", re.compile(r"secret:(?P<name>[A-Za-z0-9_./-]+)")),
    ("", "name", re.compile(rf"(?P<name>[A-Za-z_][A-Za-z0-9_]*{_PATH})")),
]
# `$${`, or a reference split into the parts of its form (as `_FORMS`, first prefix winning), or any other
# `${...}`: one scan of the text, with no second match per reference. Group names are the forms' kinds.
_SCAN = re.compile(
    r"\$\$\{"
    r"|\$\{\s*(?:raw:\s*)?(?:"
    rf"steps\.(?P<step>[A-Za-z_][A-Za-z0-9_-]*)\.(?P<output>{_KEY}{_PATH})"
    r"|env\.(?P<env>[A-Za-z_][A-Za-z0-9_]*)"
    r"|secret:(?P<secret>[A-Za-z0-9_./-]+)"
    rf"|(?!steps\.|env\.|secret:)(?P<name>[A-Za-z_][A-Za-z0-9_]*{_PATH})"
    r")\s*\}"
    r"|\$\{[^}]*\}")
_KINDS: dict[str, ReferenceKind] = {"env": "env", "secret": "secret", "name": "name"}
FORMS_HELP = "${name}, ${steps.<id>.<output>}, ${env.NAME} or ${secret:NAME} (write $${ for a literal ${)"


class Reference(NamedTuple):
    kind: ReferenceKind
    name: str  # the parameter/variable path, the step's output path (dotted: `[0]` is `.0`), the env var or secret
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


_new = tuple.__new__  # a Reference without the Python frame of its class's __new__: references are many


def find_references(text: str) -> list[Reference]:
    """Every reference in `text`, in order; raises `ReferenceSyntaxError` at the first malformed one."""
    if "${" not in text:
        return []
    found: list[Reference] = []
    position = 0  # where the last reference ends
    for match in _SCAN.finditer(text):
        kind = match.lastgroup
        if kind == "output":
            output = _dotted(match["output"])
            found.append(_new(Reference, ("step", output, match["step"], output, match[0], match.start(), match.end())))
        elif kind is not None:
            name = _dotted(match[kind]) if kind == "name" else match[kind]
            found.append(_new(Reference, (_KINDS[kind], name, None, None, match[0], match.start(), match.end())))
        elif match[0] == "$${":
            continue
        else:
            found.append(_parse(match[0], match.start()))  # not one of the forms: says why
        position = match.end()
    if text.find("${", position) != -1:
        _unclosed(text, position)
    return found


def _unclosed(text: str, position: int) -> None:
    """Raise at the first `${` after `position` that no `}` closes (the scan above skips it), if any."""
    while opening := _OPEN.search(text, position):
        if opening.group() == "$${":
            position = opening.end()
            continue
        if text.find("}", opening.end()) == -1:
            raise ReferenceSyntaxError(
                f"'${{' at offset {opening.start()} is never closed by '}}'; write $${{ for a literal ${{",
                opening.start())
        position = opening.end()


def _parse(raw: str, start: int) -> Reference:
    body = raw[2:-1].strip()
    if body.startswith("raw:"):
        body = body[4:].strip()
    for prefix, kind, pattern in _FORMS:  # noqa: B007 - the form found is used after the loop
        if body.startswith(prefix):
            break
    if match := pattern.fullmatch(body):
        step = match.groupdict().get("step")
        name = _dotted(match["name"])
        return Reference(kind, name, step, name if step else None, raw, start, start + len(raw))
    raise ReferenceSyntaxError(f"{raw} is not a reference; use {FORMS_HELP}", start)


def _dotted(path: str) -> str:
    """`items[0].id` as `items.0.id`: one spelling of a path for everything that walks it."""
    return path.replace("[", ".").replace("]", "") if "[" in path else path
