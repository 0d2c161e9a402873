"""Values of the right type that no run can honour: a timeout of no time (or of centuries), no attempt, a gate
asking more people than it names, a failure category that does not exist; a name no view can show.

Checked here, not as constraints of the Structs: a playbook a run already pinned is decoded with those
Structs, and a bound added later must not make its history unreadable.
"""
from __future__ import annotations

import math
import re
from typing import get_args

from events.playbook import (ApprovalGate, CircuitSpec, CommandSucceeds, DiskSpace, ErrorHandler, HttpStatus,
                             MemoryUsage, Playbook, PortOpen, RetryPolicy, Step)
from events.run import ErrorCategory
from services.playbook.diagnostics import Issue, Path, did_you_mean
from services.playbook.regexes import regex_problem

CATEGORIES: tuple[str, ...] = get_args(ErrorCategory)
# A year and a day: the longest timeout, delay or open breaker. Far longer overflows the clock, and a NATS timer
# due past Go's ~292-year duration fires at once (a retry "in 3,171 years" ran again at once).
MAX_WAIT_SECONDS = 366 * 24 * 3600
# A name is on every line of the run list, the audit and the insights, and in refusals: a sentence, not a book.
MAX_NAME_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def name_bound_issues(playbook: Playbook) -> list[Issue]:
    """The playbook's and its steps' names: at most MAX_NAME_CHARS, on one line, no control characters."""
    named = [(playbook.name, ("name",))] + [(step.name, ("steps", i, "name")) for i, step in enumerate(playbook.steps)]
    issues = []
    for name, at in named:
        if len(name) > MAX_NAME_CHARS:
            issues.append(Issue("PB104", f"a name may be {MAX_NAME_CHARS} characters at most; this one has {len(name)}",
                                at))
        elif _CONTROL.search(name):
            issues.append(Issue("PB104", "a name may hold no control characters (line breaks, escapes, tabs)", at))
    return issues


def step_bound_issues(step: Step, at: Path) -> list[Issue]:
    """Every bound a step's own keys break; `at` is where the step is written."""
    issues = _seconds(step.timeout_seconds, at + ("timeout_seconds",))
    for k, undo in enumerate(step.rollback):
        issues += _seconds(undo.timeout_seconds, at + ("rollback", k, "timeout_seconds"))
    if step.retry is not None:
        issues += _retry(step.retry, at + ("retry",))
    if step.approval_gate is not None:
        issues += _gate(step.approval_gate, at + ("approval_gate",))
    if isinstance(step.circuit, CircuitSpec):
        issues += _seconds(step.circuit.open_seconds, at + ("circuit", "open_seconds"))
    for k, check in enumerate(step.validators):
        issues += _validator(check, at + ("validators", k))
    return issues


def handler_bound_issues(handler: ErrorHandler, at: Path) -> list[Issue]:
    """An error handler that could never match: an unknown category, a pattern that is no regular expression."""
    issues = _category(handler.category, at + ("category",)) if handler.category is not None else []
    if handler.pattern is not None and (problem := regex_problem(handler.pattern)):
        issues.append(Issue("PB104", f"pattern {problem}", at + ("pattern",)))
    issues += _seconds(handler.run.timeout_seconds, at + ("run", "timeout_seconds"))
    return issues


def _seconds(value: float | None, at: Path) -> list[Issue]:
    if value is None:
        return []
    if not (math.isfinite(value) and value > 0):
        return [Issue("PB104", f"'{at[-1]}' must be a number of seconds greater than 0, got {value:g}", at)]
    return _at_most_a_year(value, at)


def _wait(value: float, at: Path) -> list[Issue]:
    return _at_least(value, 0, at, " seconds") or _at_most_a_year(value, at)


def _at_most_a_year(value: float, at: Path) -> list[Issue]:
    if value <= MAX_WAIT_SECONDS:
        return []
    return [Issue("PB104", f"'{at[-1]}' must be at most {MAX_WAIT_SECONDS} seconds (366 days), got {value:g}", at)]


def _at_least(value: float, least: float, at: Path, unit: str = "") -> list[Issue]:
    if math.isfinite(value) and value >= least:
        return []
    return [Issue("PB104", f"'{at[-1]}' must be {least:g}{unit} or more, got {value:g}", at)]


def _between(value: float, low: float, high: float, at: Path) -> list[Issue]:
    if low <= value <= high:
        return []
    return [Issue("PB104", f"'{at[-1]}' must be from {low:g} to {high:g}, got {value:g}", at)]


def _retry(policy: RetryPolicy, at: Path) -> list[Issue]:
    issues = _at_least(policy.max_attempts, 1, at + ("max_attempts",))
    issues += _wait(policy.base_delay, at + ("base_delay",))
    issues += _wait(policy.max_delay, at + ("max_delay",))
    for k, category in enumerate(policy.retry_on_errors or []):
        issues += _category(category, at + ("retry_on_errors", k))
    for k, status in enumerate(policy.retry_on_status or []):
        issues += _between(status, 100, 599, at + ("retry_on_status", k))
    return issues


def _category(category: str, at: Path) -> list[Issue]:
    if category in CATEGORIES:
        return []
    return [Issue("PB104", f"'{category}' is not a failure category; use one of: {', '.join(CATEGORIES)}"
                           f"{did_you_mean(category, CATEGORIES)}", at)]


def _gate(gate: ApprovalGate, at: Path) -> list[Issue]:
    issues = _seconds(gate.timeout_seconds, at + ("timeout_seconds",))
    wanted, named = gate.min_approvals, len(gate.required_approvers)
    if wanted is not None and wanted < 1:
        issues.append(Issue("PB104", f"'min_approvals' must be 1 or more, got {wanted}", at + ("min_approvals",)))
    elif wanted is not None and named and wanted > named:
        issues.append(Issue("PB104", f"'min_approvals' is {wanted}, but required_approvers names {named}; each "
                                     "entry is satisfied by one person, so to need several people of a group, "
                                     "name the group once for each", at + ("min_approvals",)))
    return issues


def _validator(check: object, at: Path) -> list[Issue]:
    issues = _seconds(getattr(check, "timeout_seconds", None), at + ("timeout_seconds",))
    match check:
        case PortOpen(port=port):
            issues += _between(port, 1, 65535, at + ("port",))
        case HttpStatus(expected_status=int(status)):
            issues += _between(status, 100, 599, at + ("expected_status",))
        case HttpStatus(expected_status=list(statuses)):
            for k, status in enumerate(statuses):
                issues += _between(status, 100, 599, at + ("expected_status", k))
        case DiskSpace(min_free_gb=None, min_free_percent=None):
            issues.append(Issue("PB102", "a disk_space check needs a threshold: give 'min_free_gb' or "
                                         "'min_free_percent' (or both)", at))
        case DiskSpace(min_free_gb=gb, min_free_percent=percent):
            issues += _at_least(gb, 0, at + ("min_free_gb",), " GB") if gb is not None else []
            issues += _between(percent, 0, 100, at + ("min_free_percent",)) if percent is not None else []
        case CommandSucceeds(command=command, argv=argv) if (command is None) == (argv is None):
            issues.append(Issue("PB102", "a command_succeeds check runs one program: give exactly one of 'command' "
                                         "and 'argv'", at))
        case MemoryUsage(max_used_percent=percent):
            issues += _between(percent, 0, 100, at + ("max_used_percent",))
    return issues
