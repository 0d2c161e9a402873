"""Validate playbook text: every problem at once, each naming file, line, step and field."""
from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

import msgspec

from events import subjects
from events.playbook import Plan, Playbook, RollbackAction, Step
from services.playbook.actions import ACTION_SPECS, arg_issues
from services.playbook.bounds import handler_bound_issues, name_bound_issues, step_bound_issues
from services.playbook.conditions import condition_issues
from services.playbook.destinations import destination_issues
from services.playbook.environments import environment_variables, variable_issues
from services.playbook.diagnostics import (Diagnostic, Issue, Names, Path, PlaybookInvalid, diagnostic,
                                           did_you_mean, format_path, short)
from services.playbook.numbers import number_issues
from services.playbook.parameters import check_parameters
from services.playbook.plan import finished_before, plan_issues
from services.playbook.references import ReferenceSyntaxError, find_references
from services.playbook.schema_check import check_schema, step_id_at
from services.playbook.security import security_errors, security_issues
from services.playbook.spellings import read_as_ours
from services.playbook.step_outputs import missing, returned, root, step_outputs
from services.playbook.variable_cycles import variable_cycle_issues
from services.playbook.limits import MAX_BYTES, MAX_STEPS, too_large
from services.playbook.yaml_source import Location, YamlDocument, YamlSyntaxError, YamlTooLarge, load_yaml

DEFAULT_ACTIONS = frozenset(ACTION_SPECS)
_STEP_ID = re.compile(subjects.STEP_ID_PATTERN)


class LoadedPlaybook(msgspec.Struct, frozen=True, kw_only=True):
    playbook: Playbook
    plan: Plan
    parameters: dict[str, Any]
    environment: str | None
    variables: dict[str, Any] = {}    # what the chosen environment gives to variables (its own, or over the playbook's)
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
                  environment: str | None = None, known_actions: Collection[str] | None = None,
                  allow_unsafe_shell: bool = False) -> LoadedPlaybook:
    """The playbook ready to run; raises `PlaybookInvalid` with every diagnostic if any is an error.

    With `allow_unsafe_shell`, security errors (PB4xx) do not block; they stay in `warnings`.
    """
    try:
        diagnostics, loaded = _check(text, source, parameters, environment, known_actions)
    except Exception as err:
        raise PlaybookInvalid([_internal(err, source)]) from err
    waived = security_errors(diagnostics) if allow_unsafe_shell else []
    if loaded is None or any(d.severity == "error" and d not in waived for d in diagnostics):
        raise PlaybookInvalid(diagnostics)
    return loaded


def _internal(err: Exception, source: str) -> Diagnostic:
    return Diagnostic(code="PB000", severity="error", file=source,
                      message=f"internal error while validating ({type(err).__name__}: {err}); please report it")


def _check(text: str, source: str, given: Mapping[str, Any] | None, environment: str | None,
           known_actions: Collection[str] | None) -> tuple[list[Diagnostic], LoadedPlaybook | None]:
    if (size := _utf8_size(text)) > MAX_BYTES:
        return [Diagnostic(code="PB004", severity="error", file=source,
                           message=too_large(size))], None
    try:
        _no_surrogates(text)
        doc = load_yaml(text)
    except YamlTooLarge as err:
        line, column = err.location or (None, None)
        message = (f"the playbook has more than {MAX_STEPS} steps, the most one playbook may have; split it into "
                   "smaller playbooks" if err.path == ("steps",) else f"{err.message}; split it into smaller playbooks")
        return [Diagnostic(code="PB004", severity="error", message=message, file=source, line=line,
                           column=column)], None
    except YamlSyntaxError as err:
        line, column = err.location or (None, None)
        step = f" in step {err.step}" if err.step and err.step.startswith("steps[") else ""
        return [Diagnostic(code="PB001", severity="error", message=f"YAML syntax error{step}: {err.message}",
                           file=source, line=line, column=column,
                           step_id=None if step else err.step)], None
    issues = [Issue("PB003", f"key '{dup.path[-1]}' is written twice (first at line {dup.first.line}); YAML would "
                             "silently keep only the last one", dup.path, on_key=True) for dup in doc.duplicates]
    checked = None
    if isinstance(doc.data, dict):
        checked = _check_mapping(doc.data, given, environment,
                                 DEFAULT_ACTIONS if known_actions is None else known_actions)
        issues += checked.issues
        told = {issue.path for issue in checked.issues if issue.code == "PB103"}
        issues += [_odd_key(path, doc.data) for path in doc.odd_keys if path not in told]
    else:
        # Not quoted: a file that is one scalar is no playbook, and may be a credential someone pointed at.
        got = "the file is empty" if doc.data is None else f"the file holds {_kind_of(doc.data)}"
        issues.append(Issue("PB002", f"a playbook must be a mapping with 'name' and 'steps'; {got}"))
    placed = _place(issues, doc, source, checked.written if checked else {})
    diagnostics = sorted(placed, key=lambda d: (d.line is None, d.line or 0, d.column or 0))
    # Security errors alone still give a playbook: `allow_unsafe_shell` may waive them.
    waivable = security_errors(diagnostics)
    if checked is None or any(d.severity == "error" and d not in waivable for d in diagnostics):
        return diagnostics, None
    loaded = LoadedPlaybook(playbook=checked.playbook, plan=checked.plan, parameters=checked.values,
                            variables=checked.variables, environment=environment, warnings=diagnostics)
    return diagnostics, loaded


def _odd_key(path: Path, data: dict[Any, Any]) -> Issue:
    """A key that is no text: events are JSON, where a null or boolean key stopped the run's start and a number
    key came back as text no `${...}` finds."""
    within = path[2:-1] if len(path) > 2 and path[0] == "steps" and step_id_at(data, path) else path[:-1]
    return Issue("PB103", f"key {path[-1]!r} in '{format_path(within)}' must be a string (quote it)", path,
                 on_key=True)


def _no_surrogates(text: str) -> None:
    """A lone surrogate (`\ud800` from a JSON door) is no character: libyaml's reader failed on it raw."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        line = text.count("\n", 0, err.start)
        column = err.start - (text.rfind("\n", 0, err.start) + 1)
        raise YamlSyntaxError(f"the character {text[err.start]!r} is not allowed in YAML",
                              Location(line + 1, column + 1)) from err


def _utf8_size(text: str) -> int:
    """Bytes of the text as UTF-8, without encoding it when it is plain ASCII or surely too large."""
    if text.isascii() or len(text) > MAX_BYTES:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _place(issues: list[Issue], doc: YamlDocument, source: str, written: dict[Path, Path]) -> list[Diagnostic]:
    """Give each issue its line, column and step from the document it was found in (one more read of the text);
    an issue under a key read in our spelling points where it is written in theirs."""
    if written:
        issues = [_as_written(issue, written) for issue in issues]
    located = iter(doc.locate_all([(issue.path, issue.on_key) for issue in issues if issue.in_file]))
    return [diagnostic(issue, source, *(next(located) if issue.in_file else (None, None)),
                       step_id_at(doc.data, issue.path)) for issue in issues]


class _Checked(NamedTuple):
    issues: list[Issue]
    plan: Plan
    values: dict[str, Any]
    variables: dict[str, Any]  # what the chosen environment gives to variables
    playbook: Playbook | None  # as converted by the schema pass: the playbook itself when nothing is wrong
    written: dict[Path, Path]  # keys read in our spelling -> where they are written in theirs


def _check_mapping(data: dict[Any, Any], given: Mapping[str, Any] | None, environment: str | None,
                   actions: Collection[str]) -> _Checked:
    """Other tools' spellings read as ours, the schema, then structure, references and parameters on what
    survived the schema."""
    spelled, written = read_as_ours(data)
    playbook, positions, issues, broken = check_schema(data)
    issues = spelled + issues
    if playbook is None:
        return _Checked(issues, Plan(needs={}), {}, {}, None, written)
    later: list[Issue] = name_bound_issues(playbook)
    if isinstance(data.get("steps"), list) and not data["steps"]:
        later.append(Issue("PB105", "the playbook has no steps; add at least one under 'steps'", ("steps",)))
    plan, found = plan_issues(playbook.steps)
    later += [_moved(issue, positions) for issue in found]
    names, ids = Names(_names(data)), Names(plan.needs)
    used: set[str] = _used_by_variables(playbook)
    outputs = {step.id: step_outputs(step) for step in playbook.steps if step.action in actions}
    found_in_texts: list[Issue | _Unsure] = []
    for step, i in zip(playbook.steps, positions["steps"]):
        found_in_texts += _step_issues(step, i, actions)
        found_in_texts += _export_issues(step, i) if step.action in actions else []
        found_in_texts += [issue for path, text, scope in _texts(data["steps"][i], ("steps", i))
                           for issue in _check_text(text, path, scope, step.id, names, ids, used, outputs)]
    for k, handler in enumerate(playbook.error_handlers):
        later += _action_issues(handler.run.action, handler.run.args, ("error_handlers", k, "run"), actions)
        later += _no_timeout(handler.run, ("error_handlers", k, "run"), "remediation", "the failed step")
        later += handler_bound_issues(handler, ("error_handlers", k))
    declared = {parameter.name for parameter in playbook.parameters}
    for path, text, _ in _playbook_texts(data, declared):
        later += [item for item in _check_text(text, path, "before", "", names, ids, used, outputs)
                  if isinstance(item, Issue)]
    sure = finished_before(plan, [(item.step_id, item.other) for item in found_in_texts if isinstance(item, _Unsure)])
    later += [item.issue() if isinstance(item, _Unsure) else item for item in found_in_texts
              if not isinstance(item, _Unsure) or (item.step_id, item.other) not in sure]
    later += security_issues(data)
    later += destination_issues(data)
    if given is None and environment is not None:
        given = {}   # a run in that environment is asked about, as `run --env` starts it: no values from a caller
    values, found = check_parameters(playbook, environment=environment, given=given)
    later += [_moved(issue, positions) for issue in found]
    told = {issue.path for issue in later}     # a typed parameter's infinite default is its type's error
    later += [moved for issue in number_issues(playbook) if (moved := _moved(issue, positions)).path not in told]
    later += variable_cycle_issues(playbook, declared)
    later += variable_issues(playbook, declared, used, environment=environment, running=given is not None)
    return _Checked(issues + [issue for issue in later
                              if not any(issue.path[:end] in broken for end in range(len(issue.path) + 1))],
                    plan, values, environment_variables(playbook, environment, declared), playbook, written)


def _used_by_variables(playbook: Playbook) -> set[str]:
    """Names the playbook's variables refer to (a variable's value may use others)."""
    found: list[tuple[Path, str, str]] = []
    _strings(playbook.variables, ("variables",), "before", found)
    used: set[str] = set()
    for _, text, _ in found:
        try:
            used.update(ref.name.split(".")[0] for ref in find_references(text) if ref.kind == "name")
        except ReferenceSyntaxError:
            continue
    return used


def _names(data: dict[Any, Any]) -> set[str]:
    """Names `${...}` may use: parameters, variables and environments' own variables, read from the text so a
    schema error elsewhere hides none."""
    params, variables, environments = data.get("parameters"), data.get("variables"), data.get("environments")
    declared = [p.get("name") for p in params if isinstance(p, dict)] if isinstance(params, list) else []
    declared += list(variables if isinstance(variables, dict) else ())
    if isinstance(environments, dict):
        declared += [name for values in environments.values() if isinstance(values, dict) for name in values]
    return {n for n in declared if isinstance(n, str)}


def _as_written(issue: Issue, written: dict[Path, Path]) -> Issue:
    for end in (1, 3):
        if (head := issue.path[:end]) in written:
            return issue._replace(path=written[head] + issue.path[end:])
    return issue


def _moved(issue: Issue, positions: dict[str, list[int]]) -> Issue:
    """An issue about the i-th converted step or parameter points at its place in the text."""
    match issue.path:
        case ("steps" | "parameters" as key, int(i), *rest) if key in positions:
            return issue._replace(path=(key, positions[key][i], *rest))
    return issue


def _step_issues(step: Step, i: int, actions: Collection[str]) -> list[Issue]:
    """Checks of one step on its own: id form, known actions and their args, advice."""
    issues: list[Issue] = []
    if not _STEP_ID.fullmatch(step.id):
        suggestion = re.sub(r"[^A-Za-z0-9_-]", "_", step.id)
        suggestion = (suggestion if re.match(r"[A-Za-z_]", suggestion) else f"_{suggestion}")[:subjects.STEP_ID_MAX]
        issues.append(Issue("PB202", f"step id {short(step.id)} must start with a letter or '_' and hold only "
                                     f"letters, digits, '_' and '-', at most {subjects.STEP_ID_MAX} (it is used in "
                                     f"NATS subjects and ${{steps.<id>...}}); try {short(suggestion)}",
                            ("steps", i, "id")))
    issues += _action_issues(step.action, step.args, ("steps", i), actions)
    for k, undo in enumerate(step.rollback):
        issues += _action_issues(undo.action, undo.args, ("steps", i, "rollback", k), actions)
        issues += _no_timeout(undo, ("steps", i, "rollback", k), "rollback action", "the rollback")
    issues += step_bound_issues(step, ("steps", i))
    if step.when is not None:
        issues += condition_issues(step.when, ("steps", i, "when"))
    for k, validation in enumerate(step.validations):
        issues += condition_issues(validation, ("steps", i, "validations", k))
    if not step.name:
        issues.append(Issue("PB501", "step has no name; add 'name:' so logs and the dashboard say what it does",
                            ("steps", i)))
    issues += _no_timeout(step, ("steps", i), "step", "the run")
    return issues


def _no_timeout(action: Step | RollbackAction, at: Path, what: str, held: str) -> list[Issue]:
    """PB502: a shell command without `timeout_seconds` (no one can skip it: a hang holds `held` until a cancel)."""
    if action.action != "shell" or action.timeout_seconds is not None:
        return []
    return [Issue("PB502", f"shell {what} has no timeout_seconds, so a hung command would hold {held} forever",
                  at + ("timeout_seconds",))]


def _action_issues(action: str, args: Mapping[str, Any], at: Path, actions: Collection[str]) -> list[Issue]:
    """An action a step, a rollback or an error handler runs: one the engine has (PB206), with args it takes
    (PB107)."""
    if action not in actions:
        return [_unknown_action(action, actions, at + ("action",))]
    return arg_issues(action, args, at + ("args",))


def _unknown_action(action: str, actions: Collection[str], path: Path) -> Issue:
    known = sorted(actions)
    hint = did_you_mean(action, known) or f"; known actions: {', '.join(known)}"
    return Issue("PB206", f"unknown action '{action}'{hint}", path)


def _texts(raw: dict[str, Any], at: Path) -> list[tuple[Path, str, str]]:
    """Every string of a step that may hold references, with its path and when it is evaluated."""
    found: list[tuple[Path, str, str]] = []
    for key, scope in _SCOPES:
        if (value := raw.get(key)) is not None:
            _strings(value, at + (key,), scope, found)
    gate = raw.get("approval_gate")
    if isinstance(gate, dict) and (message := gate.get("message")) is not None:
        _strings(message, at + ("approval_gate", "message"), "before", found)
    rollback = raw.get("rollback")
    for k, undo in enumerate(rollback if isinstance(rollback, list) else []):
        if isinstance(undo, dict) and (args := undo.get("args")) is not None:
            _strings(args, at + ("rollback", k, "args"), "rollback", found)
    return found


def _playbook_texts(data: dict[Any, Any], parameters: Collection[str]) -> list[tuple[Path, str, str]]:
    """Strings outside the steps that hold references: variables, environments' own variables, error handlers'
    args (a remediation sees what a step sees)."""
    found: list[tuple[Path, str, str]] = []
    if isinstance(variables := data.get("variables"), dict):
        _strings(variables, ("variables",), "before", found)
    for name, values in data.get("environments", {}).items() if isinstance(data.get("environments"), dict) else ():
        for key, value in values.items() if isinstance(values, dict) else ():
            if key not in parameters and isinstance(value, (str, list, dict)):
                _strings({key: value}, ("environments", name), "before", found)
    for k, handler in enumerate(data.get("error_handlers") or ()):
        run = handler.get("run") if isinstance(handler, dict) else None
        if isinstance(run, dict) and (args := run.get("args")) is not None:
            _strings(args, ("error_handlers", k, "run", "args"), "before", found)
    return found


_SCOPES = (("args", "before"), ("when", "before"), ("validators", "before"), ("validations", "validations"))


def _strings(value: Any, path: Path, scope: str, found: list[tuple[Path, str, str]]) -> None:
    """The strings inside a value that hold `${` (the others cannot hold a reference)."""
    if isinstance(value, str):
        if "${" in value:
            found.append((path, value, scope))
        return
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(item, str):
            if "${" in item:
                found.append((path + (key,), item, scope))
        elif isinstance(item, (dict, list)):
            _strings(item, path + (key,), scope, found)


class _Unsure(NamedTuple):
    """A reference to another step's output, an issue unless that step is sure to have finished before."""

    step_id: str
    other: str
    raw: str
    path: Path

    def issue(self) -> Issue:
        return Issue("PB209", f"{self.raw} uses step '{self.other}', which is not sure to have finished "
                              f"before this step starts; add '{self.other}' to depends_on", self.path)


def _export_issues(step: Step, i: int) -> list[Issue]:
    """PB213 for an export (`outputs: [{name, from}]`) reading what the action never returns: it failed the step
    after its action had run."""
    names = returned(step.action, step.args)
    issues = []
    for k, spec in enumerate(step.outputs if names is not None else ()):
        if (found := root(spec.from_)) and (instead := missing(found, names)):  # type: ignore[arg-type]
            issues.append(Issue("PB213", f"'from: {spec.from_}' reads '{found}', which a {step.action} step's "
                                         f"outputs never hold {instead}", ("steps", i, "outputs", k, "from")))
    return issues


def _check_text(text: str, path: Path, scope: str, step_id: str, names: Names, ids: Names,
                used: set[str], outputs: dict[str, frozenset[str] | None]) -> list[Issue | _Unsure]:
    """References in one string: names must exist, step outputs must come from steps sure to have run and be
    outputs those steps have. The names it uses go into `used`.

    Whether a step is sure to have run is asked of the whole plan at once, later (`_Unsure`).
    """
    try:
        references = find_references(text)
    except ReferenceSyntaxError as err:
        return [Issue("PB210", str(err), path)]
    issues: list[Issue | _Unsure] = []
    for ref in references:
        if ref.kind == "name":
            used.add(root := ref.name.split(".")[0])
        if ref.kind == "name" and scope == "before" and root not in names.names:
            hint = names.hint(root)
            if not hint and root.isupper():
                hint = f"; for a shell variable write $${{{root}}}, for the engine's environment ${{env.{root}}}"
            issues.append(Issue("PB207", f"{ref.raw} names '{root}', which is neither a parameter nor a variable"
                                         f"{hint} (known: {names.listing() or 'none'})", path))
        elif ref.kind == "name" and scope != "before" and (own := outputs.get(step_id)) is not None \
                and root not in names.names and (instead := missing(root, own)):
            issues.append(Issue("PB213", f"{ref.raw} names '{root}', which is neither a parameter, a variable nor "
                                         f"an output of this step {instead}", path))
        elif ref.kind == "step" and ref.step_id not in ids.names:
            issues.append(Issue("PB208", f"{ref.raw} refers to step '{ref.step_id}', which does not exist"
                                         f"{ids.hint(ref.step_id or '')}", path))
        elif ref.kind == "step" and (theirs := outputs.get(ref.step_id or "")) is not None \
                and (instead := missing(name := ref.name.split(".")[0], theirs)):
            issues.append(Issue("PB213", f"{ref.raw} reads output '{name}', which step '{ref.step_id}' never has "
                                         f"{instead}", path))
        elif ref.kind == "step" and ref.step_id == step_id and scope == "before":
            issues.append(Issue("PB209", f"{ref.raw} uses this step's own output before it exists; "
                                         "use it in validations or rollback instead", path))
        elif ref.kind == "step" and ref.step_id != step_id:
            issues.append(_Unsure(step_id, ref.step_id or "", ref.raw, path))
    return issues


def _kind_of(value: object) -> str:
    """What a document is, without its text: `a string of 63 characters`, `a list of 2 items`."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return f"a {type(value).__name__} value"
