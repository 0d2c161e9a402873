"""Retrying a run in place, pure: which steps run again, with which values and playbook, or why not.

A failed or cancelled run goes on where it stopped: the failed steps (or `from_step`) and
everything downstream of them in the plan run again as new attempts; every other step
keeps its outcome and outputs. Corrected parameters and a replacement playbook are checked
here, against what the run already did.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from events.playbook import Plan, Playbook
from events.run import RunEvent, RunRetried
from services.domain.run.commands import Retry
from services.domain.run.state import Run
from services.errors import CommandRejected
from services.playbook.diagnostics import did_you_mean, raise_if_errors
from services.playbook.parameters import check_parameters


def retry(run: Run, cmd: Retry, at: datetime) -> list[RunEvent]:
    """`RunRetried`, or CommandRejected saying why the run cannot go on this way."""
    asked = cmd.asked
    started = run.started
    assert started is not None
    _check_retryable(run)
    playbook, plan = (cmd.replacement.playbook, cmd.replacement.plan) if cmd.replacement else (run.playbook, run.plan)
    specs = {step.id: step for step in playbook.steps}
    if asked.from_step is not None and asked.from_step not in specs:
        raise CommandRejected(f"run {run.id} has no step {asked.from_step!r} to retry from"
                              f"{did_you_mean(asked.from_step, specs)}", "unknown_step")
    # The failures that stopped the run; one its step tolerates stays as it is unless it is downstream.
    failed = [s.id for s in run.steps.values() if s.status == "failed" and s.id in specs
              and (not specs[s.id].continue_on_failure or s.attempt.category == "cancelled")]
    again = downstream(plan, [asked.from_step] if asked.from_step else failed)
    if stuck := [step_id for step_id in failed if step_id not in again]:
        raise CommandRejected(f"step {stuck[0]} failed and would not run again from {asked.from_step}; retry from "
                              f"{stuck[0]} or from a step it depends on", "illegal_transition")
    if cmd.replacement is not None:
        _check_replacement(run, playbook, plan, again)
    reset = [step_id for step_id in specs if step_id in run.steps and (
        step_id in again or run.steps[step_id].status == "scheduled" or run.steps[step_id].gate.status == "requested")]
    if not reset and not any(s.status == "pending" for s in run.steps.values()) and set(specs) <= set(run.steps):
        raise CommandRejected(f"run {run.id} has nothing left to run: every step finished; retry from a step "
                              "to run it again", "illegal_transition")
    parameters = _parameters(run, playbook, asked.parameters, changed_playbook=cmd.replacement is not None)
    return [RunRetried(run_id=run.id, at=at, actor=asked.actor or "anonymous", on_behalf_of=asked.on_behalf_of,
                       steps=reset, from_step=asked.from_step, reason=asked.reason, corrected=list(asked.parameters),
                       parameters=parameters,
                       playbook=playbook if cmd.replacement else None, plan=plan if cmd.replacement else None,
                       variables=cmd.replacement.variables if cmd.replacement else None,
                       source=asked.source if cmd.replacement else "", pin=cmd.pin if cmd.replacement else None)]


def downstream(plan: Plan, roots: Iterable[str]) -> set[str]:
    """The roots and every step that waits on them, directly or not (linear in the plan's size)."""
    waiting: dict[str, list[str]] = {}
    for step_id, needs in plan.needs.items():
        for need in needs:
            waiting.setdefault(need, []).append(step_id)
    found = set(roots)
    todo = list(found)
    while todo:
        for later in waiting.get(todo.pop(), ()):
            if later not in found:
                found.add(later)
                todo.append(later)
    return found


def _check_retryable(run: Run) -> None:
    started = run.started
    assert started is not None
    if started.dry_run:
        raise CommandRejected(f"run {run.id} is a dry run; start the playbook for real instead",
                              "illegal_transition")
    if run.phase == "rollback" and not run.finished:
        doing = "rolling back" if run.status == "rolling_back" else f"{run.status} in its rollback"
        raise CommandRejected(f"run {run.id} is {doing}: what it did is being undone, so let the rollback end, then "
                              "start a new run", "illegal_transition")
    if run.status == "rolled_back":
        raise CommandRejected(f"run {run.id} was rolled back: what it did is undone, so start a new run",
                              "illegal_transition")
    if run.phase == "rollback":     # its rollback failed, or was cancelled: some of what it did is not undone
        raise CommandRejected(f"run {run.id} was rolled back in part ({run.status}); roll it back again to undo the "
                              "rest, or start a new run", "illegal_transition")
    if run.status == "completed":
        raise CommandRejected(f"run {run.id} completed; there is nothing to retry", "illegal_transition")
    if run.status not in ("failed", "cancelled"):
        raise CommandRejected(f"run {run.id} is {run.display_status}; only a failed or cancelled run can be "
                              "retried (cancel it first)", "illegal_transition")


def _check_replacement(run: Run, playbook: Playbook, plan: Plan, again: set[str]) -> None:
    """A replacement is the same playbook (grants are per playbook), keeps every step that ran, and keeps the
    steps that keep their outcome exactly as they ran."""
    if playbook.name != run.playbook.name:
        raise CommandRejected(f"run {run.id} runs playbook {run.playbook.name!r}; the replacement is "
                              f"{playbook.name!r}: give a version of the same playbook, or start the other one",
                              "incompatible_playbook")
    specs = {step.id: step for step in playbook.steps}
    kept = {s.id for s in run.steps.values() if s.id not in again and s.status in ("succeeded", "skipped")}
    for step in run.steps.values():
        if step.ran and step.id not in specs:
            raise CommandRejected(f"step {step.id} ran in run {run.id}; the replacement playbook must keep it "
                                  "(it may change it, if it runs again)", "incompatible_playbook")
        if step.id in kept and step.id in specs and specs[step.id] != run.specs[step.id]:
            raise CommandRejected(f"step {step.id} {step.status} as pinned, and the replacement playbook changes it; "
                                  f"retry from {step.id} to run it as changed", "incompatible_playbook")
        if step.id in kept and (early := [n for n in plan.needs.get(step.id, ()) if n not in kept]):
            raise CommandRejected(f"step {step.id} already {step.status}, but in the replacement playbook it waits "
                                  f"for {early[0]}, which has not; order {early[0]} after it", "incompatible_playbook")


def _parameters(run: Run, playbook: Playbook, corrections: dict[str, Any], *,
                changed_playbook: bool) -> dict[str, Any] | None:
    """The run's values from now on, when they change; PlaybookInvalid when a correction does not fit."""
    started = run.started
    assert started is not None
    if not corrections and not changed_playbook:
        return None
    declared = {parameter.name for parameter in playbook.parameters}
    given = {name: value for name, value in started.parameters.items() if name in declared} | corrections
    values, issues = check_parameters(playbook, environment=started.environment, given=given)
    raise_if_errors(issues, started.source or "<playbook>")
    return None if values == started.parameters else values
