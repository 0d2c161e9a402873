"""Security analysis of a playbook (PB4xx): what its shell steps would really run, and what it leaks.

Shell commands are parsed (`syntax`) and every program they run is checked
(`shell.check`), not searched for substrings. A `${...}` the analysis cannot see is a value
that may be anything, or empty: `rm -rf ${dir}/` with an empty `dir` is `rm -rf /`. Errors
stop a run unless it is started with `allow_unsafe_shell`.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from services.playbook.credentials import credential_issues, transport_issues
from services.playbook.diagnostics import Diagnostic, Issue, Path
from services.playbook.shell.model import Risk
from services.playbook.shell.check import ShellFinding, check_argv, check_command


def security_errors(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """The findings that must stop a run unless it was started with `allow_unsafe_shell`."""
    return [d for d in diagnostics if d.code.startswith("PB4") and d.severity == "error"]


def security_issues(data: dict[Any, Any]) -> list[Issue]:
    """Every PB4xx issue of a playbook's raw data: shell steps, http steps, and every text value."""
    known, risks = _known_values(data)
    issues = list(credential_issues(data))
    seen: dict[str, list[ShellFinding]] = {}  # generated playbooks repeat commands: each is analysed once
    for at, action in _actions(data):
        args = action.get("args") if isinstance(action, dict) else None
        if isinstance(args, dict) and action.get("action") == "shell":
            issues += _shell_step(args, at + ("args",), known, risks, seen)
        elif isinstance(args, dict) and action.get("action") == "http_request":
            issues += transport_issues(args, at + ("args",))
    return issues


def _actions(data: dict[Any, Any]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every action the playbook may run: steps, their rollbacks, error handlers' remediations."""
    steps = data.get("steps")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            continue
        yield ("steps", i), step
        rollback = step.get("rollback")
        for k, undo in enumerate(rollback if isinstance(rollback, list) else []):
            yield ("steps", i, "rollback", k), undo
    handlers = data.get("error_handlers")
    for k, handler in enumerate(handlers if isinstance(handlers, list) else []):
        if isinstance(handler, dict):
            yield ("error_handlers", k, "run"), handler.get("run")


def _known_values(data: dict[Any, Any]) -> tuple[dict[str, str], dict[str, Risk]]:
    """Text variables are inlined into commands; every other name gets how risky its value is."""
    known: dict[str, str] = {}
    risks: dict[str, Risk] = {}
    variables = data.get("variables")
    for name, value in (variables if isinstance(variables, dict) else {}).items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            known[str(name)] = str(value)
        else:
            risks[str(name)] = "empty" if value is None else "set"
    parameters = data.get("parameters")
    for parameter in parameters if isinstance(parameters, list) else []:
        if isinstance(parameter, dict) and isinstance(parameter.get("name"), str):
            fixed = parameter.get("required") is True or parameter.get("default") not in (None, "")
            risks[parameter["name"]] = "set" if fixed else "empty"
    return known, risks


def _shell_step(args: dict[Any, Any], at: Path, known: dict[str, str], risks: dict[str, Risk],
                seen: dict[str, list[ShellFinding]]) -> list[Issue]:
    command, argv = args.get("command"), args.get("argv")
    if isinstance(command, str):
        if command not in seen:
            seen[command] = check_command(command, known, risks)
        return [_issue(finding, at + ("command",), command) for finding in seen[command]]
    if isinstance(argv, list) and argv and all(isinstance(item, str) for item in argv):
        return [_issue(finding, at + ("argv",), "") for finding in check_argv(argv, known, risks)]
    return []


def _issue(finding: ShellFinding, path: Path, command: str) -> Issue:
    """The field locates the command in the file; where in the command is said in the message when it helps."""
    where = ""
    if "\n" in command.strip():
        where = f" (line {finding.line}, column {finding.column} of the command)"
    elif finding.column > 1:
        where = f" (column {finding.column} of the command)"
    return Issue(finding.code, finding.message + where, path)
