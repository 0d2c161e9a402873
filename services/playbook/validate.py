"""Validate playbook text: every problem at once, each naming file, line, step and field."""
from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any, NamedTuple

import msgspec
import msgspec.inspect as mi

from events.playbook import Parameter, Plan, Playbook, Step
from services.playbook.diagnostics import (Diagnostic, Issue, Path, PlaybookInvalid, did_you_mean, diagnostic,
                                           format_path)
from services.playbook.parameters import check_parameters
from services.playbook.plan import plan_issues, upstream
from services.playbook.references import ReferenceSyntaxError, find_references
from services.playbook.yaml_source import YamlDocument, YamlSyntaxError, load_yaml

DEFAULT_ACTIONS = frozenset({"noop", "wait", "shell", "http_request"})
_STEP_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class LoadedPlaybook(msgspec.Struct, frozen=True, kw_only=True):
    playbook: Playbook
    plan: Plan
    parameters: dict[str, Any]
    environment: str | None
    warnings: list[Diagnostic]


def validate_playbook(text: str, source: str = "<playbook>", *, parameters: Mapping[str, Any] | None = None,
                      environment: str | None = None,
                      known_actions: Collection[str] | None = None) -> list[Diagnostic]:
    """Every diagnostic for the text, sorted by line; never raises."""
    try:
        return _check(text, source, parameters, environment, known_actions)[0]
    except Exception as err:  # a validator bug must still answer with a diagnostic, not a traceback
        return [_internal(err, source)]


def load_playbook(text: str, source: str = "<playbook>", *, parameters: Mapping[str, Any] | None = None,
                  environment: str | None = None, known_actions: Collection[str] | None = None) -> LoadedPlaybook:
    """The playbook ready to run; raises `PlaybookInvalid` with every diagnostic if any is an error."""
    try:
        diagnostics, loaded = _check(text, source, parameters, environment, known_actions)
    except Exception as err:
        raise PlaybookInvalid([_internal(err, source)]) from err
    if loaded is None or any(d.severity == "error" for d in diagnostics):
        raise PlaybookInvalid(diagnostics)
    return loaded


def _internal(err: Exception, source: str) -> Diagnostic:
    return Diagnostic(code="PB000", severity="error", file=source,
                      message=f"internal error while validating ({type(err).__name__}: {err}); please report it")


def _check(text: str, source: str, given: Mapping[str, Any] | None, environment: str | None,
           known_actions: Collection[str] | None) -> tuple[list[Diagnostic], LoadedPlaybook | None]:
    try:
        doc = load_yaml(text)
    except YamlSyntaxError as err:
        line, column = err.location or (None, None)
        return [Diagnostic(code="PB001", severity="error", message=f"YAML syntax error: {err.message}",
                           file=source, line=line, column=column)], None
    issues = [Issue("PB003", f"key '{dup.path[-1]}' is written twice (first at line {dup.first.line}); YAML would "
                             "silently keep only the last one", dup.path, on_key=True) for dup in doc.duplicates]
    checked = None
    if isinstance(doc.data, dict):
        checked = _Checked(doc.data, given, environment, DEFAULT_ACTIONS if known_actions is None else known_actions)
        issues += checked.issues
    else:
        got = "the file is empty" if doc.data is None else f"the file holds {_words(doc.data)}"
        issues.append(Issue("PB002", f"a playbook must be a mapping with 'name' and 'steps'; {got}"))
    diagnostics = sorted((_place(issue, doc, source) for issue in issues),
                         key=lambda d: (d.line is None, d.line or 0, d.column or 0))
    if checked is None or any(d.severity == "error" for d in diagnostics):
        return diagnostics, None
    loaded = LoadedPlaybook(playbook=msgspec.convert(doc.data, Playbook), plan=checked.plan,
                            parameters=checked.values, environment=environment, warnings=diagnostics)
    return diagnostics, loaded


def _place(issue: Issue, doc: YamlDocument, source: str) -> Diagnostic:
    """Give an issue its line, column and step from the document it was found in."""
    line, column = doc.locate(issue.path, key=issue.on_key) if issue.in_file else (None, None)
    return diagnostic(issue, source, line, column, _raw_step_id(doc.data, issue.path))


def _raw_step_id(data: Any, path: Path) -> str | None:
    if len(path) < 2 or path[0] != "steps" or not isinstance(path[1], int) or not isinstance(data, dict):
        return None
    steps = data.get("steps")
    step = steps[path[1]] if isinstance(steps, list) and path[1] < len(steps) else None
    return step.get("id") if isinstance(step, dict) and isinstance(step.get("id"), str) else None


class _Checked:
    """One pass over a mapping: schema first, then structure, references and parameters on what survived."""

    def __init__(self, data: dict[Any, Any], given: Mapping[str, Any] | None, environment: str | None,
                 actions: Collection[str]) -> None:
        self.data = data
        self.issues: list[Issue] = []
        self.broken: set[Path] = set()  # keys that failed the schema; later checks stay quiet about them
        self.plan = Plan(needs={})
        self.values: dict[str, Any] = {}
        playbook, positions = self._schema()
        if playbook is None:
            return
        later: list[Issue] = []
        if not playbook.steps and isinstance(data.get("steps"), list) and not data["steps"]:
            later.append(Issue("PB105", "the playbook has no steps; add at least one under 'steps'", ("steps",)))
        plan, found = plan_issues(playbook.steps)
        later += [_moved(issue, positions) for issue in found]
        self.plan = plan
        for j, step in enumerate(playbook.steps):
            later += _step_issues(step, positions[j], actions)
        later += self._reference_issues(playbook, positions)
        self.values, found = check_parameters(playbook, environment=environment, given=given)
        later += found
        self.issues += [issue for issue in later if not any(issue.path[:len(b)] == b for b in self.broken)]

    def _schema(self) -> tuple[Playbook | None, list[int]]:
        """Convert item by item so each bad step and parameter is reported, not just the first."""
        items: dict[str, list[Any]] = {}
        positions: list[int] = []
        top = dict(self.data)
        for key, kind in (("steps", Step), ("parameters", Parameter)):
            if not isinstance(top.get(key), list):
                continue
            items[key] = []
            for i, raw in enumerate(top[key]):
                if (item := self._convert(raw, kind, (key, i))) is not None:
                    items[key].append(item)
                    positions += [i] if key == "steps" else []
            top[key] = []
        playbook = self._convert(top, Playbook, ())
        if playbook is None:
            return None, positions
        return msgspec.structs.replace(playbook, **items), positions

    def _convert(self, raw: Any, kind: type[Any], prefix: Path) -> Any:
        """Convert; on each failure report it, drop or fill the offending key and try again."""
        data = raw
        required = {field.encode_name for field in mi.type_info(kind).fields if field.required}
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

    def _reference_issues(self, playbook: Playbook, positions: list[int]) -> list[Issue]:
        params = self.data.get("parameters")
        variables = self.data.get("variables")
        declared = [p.get("name") for p in params if isinstance(p, dict)] if isinstance(params, list) else []
        names = {n for n in declared + list(variables if isinstance(variables, dict) else ()) if isinstance(n, str)}
        before = upstream(self.plan)
        ids = [step.id for step in playbook.steps]
        issues: list[Issue] = []
        for j, step in enumerate(playbook.steps):
            for path, text, scope in _texts(self.data["steps"][positions[j]], ("steps", positions[j])):
                issues += _check_text(text, path, scope, step.id, names, ids, before.get(step.id, set()))
        return issues


class _Failure(NamedTuple):
    """One msgspec.ValidationError, taken apart."""

    kind: str  # unknown | missing | type | enum | other
    name: str | None  # the key (unknown, missing) or the rejected value (enum)
    expected: str | None
    path: Path  # where msgspec stopped, relative to the converted object
    key_in: bool  # the problem is a key of the mapping at `path`
    text: str

    @classmethod
    def parse(cls, text: str) -> _Failure:
        for kind, pattern in _MESSAGES:
            if match := pattern.fullmatch(text):
                groups = match.groupdict()
                return cls(kind, groups.get("name"), groups.get("expected"), _path(groups.get("path") or "$"),
                           bool(groups.get("key")), text)
        return cls("other", None, None, (), False, text)


_AT = r"(?: - at (?P<key>`key` in )?`(?P<path>[^`]*)`)?"
_MESSAGES = [
    ("unknown", re.compile(r"Object contains unknown field `(?P<name>.*?)`" + _AT)),
    ("missing", re.compile(r"Object missing required field `(?P<name>.*?)`" + _AT)),
    ("type", re.compile(r"Expected `(?P<expected>[^`]*)`(?:, got `[^`]*`)?" + _AT)),
    ("enum", re.compile(r"Invalid enum value (?P<name>.*?)" + _AT)),
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
    in_step = len(prefix) == 2 and prefix[0] == "steps" and _raw_step_id(data, prefix) is not None
    label = format_path(failure.path if in_step else path)
    place = f"'{label}'" if label else ("the step" if in_step else "the playbook")
    if failure.kind == "unknown" and failure.name is not None:
        allowed = _keys_at(path)
        hint = did_you_mean(failure.name, allowed) or f"; allowed keys: {', '.join(allowed)}"
        return Issue("PB101", f"unknown key '{failure.name}' in {place}{hint}", path + (failure.name,), on_key=True)
    if failure.kind == "missing":
        return Issue("PB102", f"{place} is missing the required key '{failure.name}'", path)
    if failure.kind == "type" and failure.key_in:
        return Issue("PB103", f"keys in {place} must be strings", path)
    if failure.kind == "type" and failure.expected is not None:
        if not failure.path and len(prefix) == 2:
            what = {"steps": "'id' and 'action'", "parameters": "'name'"}.get(str(prefix[0]), "keys")
            return Issue("PB103", f"each item of '{prefix[0]}' must be a mapping with {what}; "
                                  f"{format_path(path)} is {_words(_value_at(data, path))}", path)
        wanted = [_TYPE_WORDS.get(part, part) for part in failure.expected.split(" | ") if part != "null"]
        expected = ", ".join(wanted[:-1]) + " or " + wanted[-1] if len(wanted) > 1 else "".join(wanted)
        return Issue("PB103", f"{place} must be {expected}, got {_words(_value_at(data, path))}", path)
    if failure.kind == "enum":
        allowed = _literals_at(path)
        value = failure.name or ""
        hint = did_you_mean(value.strip("'\""), allowed)
        return Issue("PB104", f"{place} is {value}, which is not allowed; use one of: {', '.join(allowed)}{hint}", path)
    return Issue("PB103", f"{place}: {failure.text}", path)


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


def _keys_at(path: Path) -> list[str]:
    return [field.encode_name for t in _type_at(path) if isinstance(t, mi.StructType) for field in t.fields]


def _literals_at(path: Path) -> list[str]:
    return [str(value) for t in _type_at(path) if isinstance(t, mi.LiteralType) for value in t.values]


def _value_at(data: Any, path: Path) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _words(value: Any) -> str:
    """A short description of a value for a message: `the string 'ten'`, `a list`."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "a mapping"
    return f"the {type(value).__name__} {str(value)[:40]}"


def _moved(issue: Issue, positions: list[int]) -> Issue:
    """Issues about the i-th converted step point at its place among the written steps."""
    if len(issue.path) > 1 and issue.path[0] == "steps" and isinstance(issue.path[1], int):
        return issue._replace(path=("steps", positions[issue.path[1]]) + issue.path[2:])
    return issue


def _step_issues(step: Step, i: int, actions: Collection[str]) -> Iterator[Issue]:
    """Checks of one step on its own: id form, known actions, advice."""
    if not _STEP_ID.fullmatch(step.id):
        suggestion = re.sub(r"[^A-Za-z0-9_-]", "_", step.id)
        suggestion = suggestion if _STEP_ID.fullmatch(suggestion) else f"_{suggestion}"
        yield Issue("PB202", f"step id '{step.id}' must start with a letter or '_' and hold only letters, digits, "
                             f"'_' and '-' (it is used in NATS subjects and ${{steps.<id>...}}); "
                             f"try '{suggestion}'", ("steps", i, "id"))
    known = sorted(actions)
    for path, action in [(("steps", i, "action"), step.action)] + [
            (("steps", i, "rollback", k, "action"), undo.action) for k, undo in enumerate(step.rollback)]:
        if action not in actions:
            hint = did_you_mean(action, known) or f"; known actions: {', '.join(known)}"
            yield Issue("PB206", f"unknown action '{action}'{hint}", path)
    if not step.name:
        yield Issue("PB501", "step has no name; add 'name:' so logs and the dashboard say what it does", ("steps", i))
    if step.action == "shell" and step.timeout_seconds is None:
        yield Issue("PB502", "shell step has no timeout_seconds, so a hung command would hold the run forever",
                    ("steps", i, "timeout_seconds"))


def _texts(raw: dict[str, Any], at: Path) -> Iterator[tuple[Path, str, str]]:
    """Every string of a step that may hold references, with its path and when it is evaluated."""
    yield from _strings(raw.get("args"), at + ("args",), "before")
    yield from _strings(raw.get("when"), at + ("when",), "before")
    yield from _strings(raw.get("validations"), at + ("validations",), "validations")
    gate = raw.get("approval_gate")
    if isinstance(gate, dict):
        yield from _strings(gate.get("message"), at + ("approval_gate", "message"), "before")
    rollback = raw.get("rollback")
    for k, undo in enumerate(rollback if isinstance(rollback, list) else []):
        if isinstance(undo, dict):
            yield from _strings(undo.get("args"), at + ("rollback", k, "args"), "rollback")


def _strings(value: Any, path: Path, scope: str) -> Iterator[tuple[Path, str, str]]:
    if isinstance(value, str):
        yield path, value, scope
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, path + (key,), scope)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, path + (index,), scope)


def _check_text(text: str, path: Path, scope: str, step_id: str, names: set[str], ids: list[str],
                before: set[str]) -> list[Issue]:
    """References in one string: names must exist, step outputs must come from steps sure to have run."""
    try:
        references = find_references(text)
    except ReferenceSyntaxError as err:
        return [Issue("PB210", str(err), path)]
    issues: list[Issue] = []
    for ref in references:
        if ref.kind == "name" and scope != "validations" and (root := ref.name.split(".")[0]) not in names:
            hint = did_you_mean(root, names)
            if not hint and root.isupper():
                hint = f"; for a shell variable write $${{{root}}}, for the engine's environment ${{env.{root}}}"
            known = ", ".join(sorted(names)) or "none"
            issues.append(Issue("PB207", f"{ref.raw} names '{root}', which is neither a parameter nor a variable"
                                         f"{hint} (known: {known})", path))
        elif ref.kind == "step" and ref.step_id not in ids:
            issues.append(Issue("PB208", f"{ref.raw} refers to step '{ref.step_id}', which does not exist"
                                         f"{did_you_mean(ref.step_id or '', ids)}", path))
        elif ref.kind == "step" and ref.step_id == step_id and scope == "before":
            issues.append(Issue("PB209", f"{ref.raw} uses this step's own output before it exists; "
                                         "use it in validations or rollback instead", path))
        elif ref.kind == "step" and ref.step_id != step_id and ref.step_id not in before:
            issues.append(Issue("PB209", f"{ref.raw} uses step '{ref.step_id}', which is not sure to have finished "
                                         f"before this step starts; add '{ref.step_id}' to depends_on", path))
    return issues
