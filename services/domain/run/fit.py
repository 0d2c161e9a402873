"""Which events fit a run's state: those the decider could have written there. The others are quarantined.

A stream can hold what no decision of ours would write (a hand-made publish, a bug of
another version, a corrupted copy): a `StepStarted` naming a step the playbook does not
have, a step succeeding that never started, a step scheduled past an approval gate no one granted, an event this
version cannot decode (`Unreadable`).
The fold records such an event with its reason and changes nothing else, so every view and
service goes on with the run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from events.run import (
    RollbackCompleted, RollbackFailed, RollbackStarted, RunCancelled, RunCompleted, RunEvent, RunFailed, RunRetried,
    RunStarted, StepFailed, StepRollbackFailed, StepRollbackStarted, StepRolledBack, StepStarted, StepSucceeded,
    Unreadable,
)

if TYPE_CHECKING:
    from services.domain.run.state import Run, StepState


def misfit(run: Run, event: RunEvent) -> str | None:
    """Why `event` cannot follow the run's state; None when it fits."""
    if isinstance(event, Unreadable):
        return f"this version of the engine cannot read it: {event.error}"
    if isinstance(event, RunStarted):
        return "the run had started already" if run.exists else None
    if not run.exists:
        return "no RunStarted before it"
    step_id = getattr(event, "step_id", None)
    if step_id is not None and step_id not in run.steps:
        return f"the playbook has no step {step_id!r}"
    if isinstance(event, RollbackStarted):
        unknown = sorted({s for wave in event.waves for s in wave} - run.steps.keys())
        return f"the playbook has no step {', '.join(map(repr, unknown))}" if unknown else None
    if isinstance(event, RunRetried) and (event.playbook is not None or event.pin is None):
        # A replacement's steps, or the run's: one it has not would break the fold for every reader.
        known = {step.id for step in event.playbook.steps} if event.playbook is not None else run.steps.keys()
        unknown = sorted(set(event.steps) - known)
        return f"the playbook has no step {', '.join(map(repr, unknown))}" if unknown else None
    if step_id is not None:
        return _misfit_step(run.steps[step_id], event)
    if isinstance(event, (RunCompleted, RunFailed, RunCancelled, RollbackCompleted, RollbackFailed)) and run.finished:
        return f"the run is {run.status} already"
    if isinstance(event, (RollbackCompleted, RollbackFailed)) and run.phase != "rollback":
        return "no rollback was started"
    return None


def unschedulable(run: Run, step: StepState) -> str | None:
    """Why a `StepScheduled` the fold would apply to `step` is none the engine writes, else None: the decider
    schedules a step only once its needs settled and its gate (if any) was granted; an executor's login, which may
    schedule a step again (its holder gone before starting it), must not run a step early or past its gate by
    scheduling it. (A late timer the fold ignores is not asked.)"""
    if step.status == "scheduled":
        return None     # scheduled again: a resume, or its holder gone before it started
    if gated := _ungranted(run, step.id):
        return f"step {step.id} waits at its approval gate ({gated}): it is scheduled only once the gate is granted"
    if run.waiting.get(step.id):
        return f"step {step.id} needs steps that have not settled: it is scheduled only once they have"
    return None


def _ungranted(run: Run, step_id: str) -> str:
    """How the step's gate stands when it has one no one granted ("" when it has none, or it was granted): the
    decider schedules a gated step only once granted, and an executor's login, which may schedule a step again,
    must not open a gate by scheduling the step behind it."""
    if run.gate_of(step_id) is None:
        return ""
    status = run.steps[step_id].gate.status
    return "" if status == "granted" else status or "not requested yet"


def _misfit_step(step: StepState, event: RunEvent) -> str | None:
    attempt = getattr(event, "attempt", 0)
    match event:
        case StepStarted() if step.status != "scheduled" or attempt != step.attempt.number:
            return _not(step, "scheduled", attempt)
        case StepSucceeded() if step.status != "running" or attempt != step.attempt.number:
            return _not(step, "running", attempt)
        case StepFailed() if not (step.status == "running" and attempt == step.attempt.number
                                  or step.status == "pending" and attempt == step.attempt.number + 1
                                  or _never_started(step.status, attempt == step.attempt.number, event)):
            return _not(step, "running", attempt)
        case StepRollbackStarted() if step.rollback.status != "scheduled" or attempt != step.rollback.attempt:
            return f"step {step.id}'s rollback is not scheduled as attempt {attempt}"
        case (StepRolledBack() | StepRollbackFailed()) if not (
                step.rollback.status == "running" and attempt == step.rollback.attempt
                or _never_started(step.rollback.status, attempt == step.rollback.attempt, event)):
            return f"step {step.id}'s rollback is not running as attempt {attempt}"
    return None


def _never_started(status: str, this_attempt: bool, event: RunEvent) -> bool:
    """An attempt the executor gave up starting fails as an engine error (`abandoned.py`) while scheduled."""
    return status == "scheduled" and this_attempt and getattr(event, "category", "") == "engine"


def _not(step: StepState, expected: str, attempt: int) -> str:
    return f"step {step.id} is {step.status} (attempt {step.attempt.number}), not {expected} as attempt {attempt}"
