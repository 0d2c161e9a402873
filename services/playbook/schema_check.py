"""The schema pass: msgspec conversion item by item, its errors rewritten as plain, located words."""
from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

import msgspec
import msgspec.inspect as mi

from events.playbook import Parameter, Playbook, Step
from services.playbook.diagnostics import Issue, Path, did_you_mean, format_path
from services.playbook.spellings import answer


STEPS_PER_CALL = 500    # one msgspec call holds the GIL throughout: 10,000 steps at once held it ~40 ms, and the
                        # engine checks a playbook on a thread beside its event loop


class SchemaResult(NamedTuple):
    playbook: Playbook | None  # with bad keys dropped and missing ones filled, so later checks can still run
    positions: dict[str, list[int]]  # "steps"/"parameters": the written index of each converted item
    issues: list[Issue]
    broken: set[Path]  # keys that failed; later checks stay quiet about them


def check_schema(data: dict[Any, Any]) -> SchemaResult:
    """Every schema error of the data, not just the first one msgspec meets."""
    checker = _Checker(data)
    playbook, positions = checker.run()
    return SchemaResult(playbook, positions, checker.issues, checker.broken)


def _converted(data: dict[Any, Any]) -> Playbook:
    """`msgspec.convert(data, Playbook)`, the steps STEPS_PER_CALL at a time: between calls, other threads run."""
    steps = data.get("steps")
    if not isinstance(steps, list) or len(steps) <= STEPS_PER_CALL:
        return msgspec.convert(data, Playbook)
    converted = [step for start in range(0, len(steps), STEPS_PER_CALL)
                 for step in msgspec.convert(steps[start:start + STEPS_PER_CALL], list[Step])]
    return msgspec.structs.replace(msgspec.convert({**data, "steps": []}, Playbook), steps=converted)


def step_id_at(data: Any, path: Path) -> str | None:
    """The written id of the step a path points into, if it has a usable one."""
    if len(path) < 2 or path[0] != "steps" or not isinstance(path[1], int) or not isinstance(data, dict):
        return None
    steps = data.get("steps")
    step = steps[path[1]] if isinstance(steps, list) and path[1] < len(steps) else None
    return step.get("id") if isinstance(step, dict) and isinstance(step.get("id"), str) else None


class _Checker:
    """Converts while collecting issues; `broken` remembers which keys were dropped or filled in."""

    def __init__(self, data: dict[Any, Any]) -> None:
        self.data = data
        self.issues: list[Issue] = []
        self.broken: set[Path] = set()

    def run(self) -> tuple[Playbook | None, dict[str, list[int]]]:
        """Convert steps and parameters one by one, then the rest, so every bad item is reported.

        A playbook without a schema error converts at once, in a few calls: the usual case, and
        the one that matters at 100,000 steps.
        """
        try:
            playbook = _converted(self.data)
        except msgspec.ValidationError:
            pass
        else:
            return playbook, {"steps": list(range(len(playbook.steps))),
                              "parameters": list(range(len(playbook.parameters)))}
        top = dict(self.data)
        steps = self._items(top, "steps", Step)
        parameters = self._items(top, "parameters", Parameter)
        playbook = self._convert(top, Playbook, ())
        if playbook is None:
            return None, {}
        playbook = msgspec.structs.replace(
            playbook, steps=[step for _, step in steps] if steps is not None else playbook.steps,
            parameters=[p for _, p in parameters] if parameters is not None else playbook.parameters)
        return playbook, {"steps": [i for i, _ in steps or []], "parameters": [i for i, _ in parameters or []]}

    def _items(self, top: dict[Any, Any], key: str, kind: type[Any]) -> list[tuple[int, Any]] | None:
        """The convertible items of a list, with their written index; the list leaves `top` to be checked alone."""
        if not isinstance(top.get(key), list):
            return None
        items = [(i, self._convert(raw, kind, (key, i))) for i, raw in enumerate(top[key])]
        top[key] = []
        return [(i, item) for i, item in items if item is not None]

    def _convert(self, raw: Any, kind: type[Any], prefix: Path) -> Any:
        """Convert; on each failure report it, drop or fill the offending key and try again."""
        data = raw
        required = _required(kind)
        for _ in range(len(raw) + len(required) + 2 if isinstance(raw, dict) else 1):
            try:
                return msgspec.convert(data, kind)
            except msgspec.ValidationError as err:
                failure = _Failure.parse(str(err))
                self.issues.append(_schema_issue(failure, prefix, self.data))
                data = dict(data) if isinstance(data, dict) else data
                key = failure.path[0] if failure.path else failure.name
                if not isinstance(data, dict) or (key is None and not failure.key_in):
                    return None
                if key is None:
                    data = {k: v for k, v in data.items() if isinstance(k, str)}
                    continue
                self.broken.add(prefix + (key,))
                if key in required:
                    data[key] = [] if key == "steps" else ""
                else:
                    data.pop(key, None)
        return None


class _Failure(NamedTuple):
    """One msgspec.ValidationError, taken apart."""

    kind: str  # unknown | missing | type | range | enum | tag | other
    name: str | None  # the key (unknown, missing) or the rejected value (enum)
    expected: str | None
    path: Path  # where msgspec stopped, relative to the converted object
    key_in: bool  # the problem is a key of the mapping at `path`
    in_entry: bool  # the problem is inside one entry of the mapping at `path`, msgspec does not say which
    text: str

    @classmethod
    def parse(cls, text: str) -> _Failure:
        for kind, pattern in _MESSAGES:
            if match := pattern.fullmatch(text):
                groups = match.groupdict()
                where = groups.get("path") or "$"
                return cls(kind, groups.get("name"), groups.get("expected"), _path(where), bool(groups.get("key")),
                           "[...]" in where, text)
        return cls("other", None, None, (), False, False, text)


_AT = r"(?: - at (?P<key>`key` in )?`(?P<path>[^`]*)`)?"
_MESSAGES = [
    ("unknown", re.compile(r"Object contains unknown field `(?P<name>.*?)`" + _AT)),
    ("missing", re.compile(r"Object missing required field `(?P<name>.*?)`" + _AT)),
    ("range", re.compile(r"Expected `(?P<expected>[^`]*)` (?P<name>[<>]=? \S+)" + _AT)),
    ("type", re.compile(r"Expected `(?P<expected>[^`]*)`(?:, got `[^`]*`)?" + _AT)),
    ("enum", re.compile(r"Invalid enum value (?P<name>.*?)" + _AT)),
    ("tag", re.compile(r"Invalid value (?P<name>.*?)" + _AT)),  # a tagged union's tag names no member
]
_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_TYPE_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "object": "a mapping", "array": "a list", "null": "empty"}


def _path(text: str) -> Path:
    """msgspec's `$.steps[2].depends_on` as a path; stops at `[...]`, a dict key msgspec does not name."""
    parts: list[str | int] = []
    for token in _TOKEN.finditer(text, 1):
        if token.group(1) is None and token.group(2) is None:
            break
        parts.append(token.group(1) if token.group(1) is not None else int(token.group(2)))
    return tuple(parts)


def _schema_issue(failure: _Failure, prefix: Path, data: Any) -> Issue:
    path = prefix + failure.path
    if failure.in_entry or failure.key_in:
        path += _culprit(_value_at(data, path), failure)
    in_step = len(prefix) == 2 and prefix[0] == "steps" and step_id_at(data, prefix) is not None
    label = format_path((path[:-1] if failure.key_in else path)[len(prefix) if in_step else 0:])
    place = f"'{label}'" if label else ("the step" if in_step else "the playbook")
    if failure.kind == "unknown" and failure.name is not None:
        allowed = _keys_at(path, _value_at(data, path))
        if instead := answer(path, failure.name):    # another tool's key: say what to write here
            hint = f" — {instead}" if instead.startswith("did you mean") else f"; {instead}"
        else:
            hint = did_you_mean(failure.name, allowed) or f"; allowed keys: {', '.join(allowed)}"
        return Issue("PB101", f"unknown key '{failure.name}' in {place}{hint}", path + (failure.name,), on_key=True)
    if failure.kind == "missing":
        tag_field, tags = _tags_at(path)
        hint = f"; use one of: {', '.join(tags)}" if tags and failure.name == tag_field else ""
        return Issue("PB102", f"{place} is missing the required key '{failure.name}'{hint}", path)
    if failure.kind == "type" and failure.key_in:
        return Issue("PB103", f"key {path[-1]!r} in {place} must be a string (quote it)", path, on_key=True)
    if failure.kind == "type" and failure.expected is not None:
        if not failure.path and len(prefix) == 2:
            what = {"steps": "'id' and 'action'", "parameters": "'name'"}.get(str(prefix[0]), "keys")
            return Issue("PB103", f"each item of '{prefix[0]}' must be a mapping with {what}; "
                                  f"{format_path(path)} is {describe_value(_value_at(data, path))}", path)
        wanted = [_TYPE_WORDS.get(part, part) for part in failure.expected.split(" | ") if part != "null"]
        expected = ", ".join(wanted[:-1]) + " or " + wanted[-1] if len(wanted) > 1 else "".join(wanted)
        got = _value_at(data, path)
        hint = "; YAML reads yes, no, on and off as true or false: quote it" if isinstance(got, bool) else ""
        return Issue("PB103", f"{place} must be {expected}, got {describe_value(got)}{hint}", path)
    if failure.kind == "range":
        return Issue("PB104", f"{place} must be {failure.name}, got {describe_value(_value_at(data, path))}", path)
    if failure.kind == "enum":
        allowed = _literals_at(path)
        value = failure.name or ""
        hint = did_you_mean(value.strip("'\""), allowed)
        return Issue("PB104", f"{place} is {value}, which is not allowed; use one of: {', '.join(allowed)}{hint}", path)
    if failure.kind == "tag" and (tags := _tags_at(path[:-1])[1]):
        value = (failure.name or "").strip("'\"")
        noun = next((part.removesuffix("s") for part in reversed(path[:-1]) if isinstance(part, str)), "item")
        return Issue("PB104", f"unknown {noun} type '{value}'{_tag_hint(value, tags)}", path)
    return Issue("PB103", f"{place}: {failure.text}", path)


@functools.cache
def _required(kind: type[Any]) -> frozenset[str]:
    return frozenset(field.encode_name for field in msgspec.structs.fields(kind) if field.required)


@functools.cache
def _root_type() -> mi.Type:
    return mi.type_info(Playbook)


def _type_at(path: Path) -> list[mi.Type]:
    """The schema's possible types at a path (a union gives several)."""
    options: list[mi.Type] = [_root_type()]
    for part in path:
        found: list[mi.Type] = []
        for option in _flatten(options):
            if isinstance(part, int) and isinstance(option, mi.ListType):
                found.append(option.item_type)
            elif isinstance(part, str) and isinstance(option, mi.StructType):
                found += [field.type for field in option.fields if field.encode_name == part]
            elif isinstance(part, str) and isinstance(option, mi.DictType):
                found.append(option.value_type)
        options = found
    return _flatten(options)


def _flatten(options: list[mi.Type]) -> list[mi.Type]:
    return [t for option in options for t in (option.types if isinstance(option, mi.UnionType) else (option,))]


def _keys_at(path: Path, value: Any) -> list[str]:
    """The keys of the Struct at a path; in a tagged union, of the member the value's tag picks."""
    keys: list[str] = []
    for t in _type_at(path):
        if not isinstance(t, mi.StructType):
            continue
        if t.tag is not None:
            if not isinstance(value, dict) or value.get(t.tag_field) != t.tag:
                continue
            keys.append(t.tag_field)
        keys += [field.encode_name for field in t.fields]
    return keys


def _tags_at(path: Path) -> tuple[str | None, list[str]]:
    """The tag key of a tagged union at a path and the tags it accepts, e.g. `type` and the validator types."""
    members = [t for t in _type_at(path) if isinstance(t, mi.StructType) and t.tag is not None]
    return (members[0].tag_field if members else None), [str(t.tag) for t in members]


def _tag_hint(value: str, tags: list[str]) -> str:
    """A close tag, or the only one the value begins (`disk` -> `disk_space`), else every tag."""
    if hint := did_you_mean(value, tags):
        return hint
    starting = [tag for tag in tags if value and tag.startswith(value)]
    return f" — did you mean '{starting[0]}'?" if len(starting) == 1 else f"; use one of: {', '.join(tags)}"


def _literals_at(path: Path) -> list[str]:
    return [str(value) for t in _type_at(path) if isinstance(t, mi.LiteralType) for value in t.values]


def _value_at(data: Any, path: Path) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str, "int": int, "float": (int, float), "bool": bool, "object": dict, "array": list, "null": type(None)}


def _culprit(mapping: Any, failure: _Failure) -> Path:
    """The entry msgspec meant by `[...]` or `key in`: the first key or value of the wrong type."""
    if not isinstance(mapping, dict):
        return ()
    if failure.key_in and not failure.in_entry:
        return next(((key,) for key in mapping if not isinstance(key, str)), ())
    wanted = tuple(_PYTHON_TYPES.get(part, object) for part in (failure.expected or "").split(" | "))
    for key, value in mapping.items():
        if failure.key_in and isinstance(value, dict) and (inner := _culprit(value, failure._replace(in_entry=False))):
            return (key,) + inner
        if not failure.key_in and (not isinstance(value, wanted) or isinstance(value, bool) and bool not in wanted):
            return (key,)
    return ()


def describe_value(value: Any) -> str:
    """A short description of a value for a message: `the string 'ten'`, `a list`."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "a mapping"
    return f"the {type(value).__name__} {str(value)[:40]}"
