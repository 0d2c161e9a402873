"""Rollback, pure: which steps to undo, in which order, and what to schedule next.

Steps that succeeded or ran at all, and that say how to undo themselves, are rolled
back in reverse order of completion; the members of a parallel group are rolled back
together, as a wave. A failed rollback action is recorded and the rollback goes on
(or stops, with `on_rollback_failure: stop`); the run ends rolled_back or
rollback_failed, never completed.
"""
from __future__ import annotations

from datetime import datetime

from events.run import RollbackCompleted, RollbackFailed, RunEvent, StepRollbackScheduled
from services.domain.run.state import Run


def rollback_waves(run: Run) -> list[list[str]]:
    """The steps to undo, in waves: latest finished first, a parallel group's members together."""
    # Any step whose action started may have left something; after a retry that includes an
    # attempt before it, even if the step has not finished again since.
    undoable = [s for s in run.steps.values() if run.specs[s.id].rollback and (s.status == "succeeded" or s.ran)]
    undoable.sort(key=lambda s: s.finished_order, reverse=True)
    result: list[list[str]] = []
    groups: dict[str, list[str]] = {}
    for step in undoable:
        group = run.specs[step.id].parallel_group
        if group and group in groups:
            groups[group].append(step.id)
            continue
        wave = [step.id]
        result.append(wave)
        if group:
            groups[group] = wave
    return result


def next_rollback_events(run: Run, at: datetime) -> list[RunEvent]:
    """The next rollback events: schedule the current wave, or end the rollback."""
    stop_on_failure = run.playbook.on_rollback_failure == "stop"
    failed = [s for wave in run.rollback_waves for s in wave if run.steps[s].rollback.status == "failed"]
    for wave in run.rollback_waves:
        states = [run.steps[s] for s in wave]
        if any(s.rollback.status in ("scheduled", "running") for s in states):
            return []
        pending = [s for s in states if s.rollback.status == "pending"]
        if pending and not (failed and stop_on_failure):
            return [StepRollbackScheduled(run_id=run.id, at=at, step_id=s.id, attempt=s.rollback.attempt + 1)
                    for s in pending]
    if failed:
        return [RollbackFailed(run_id=run.id, at=at, failed_steps=failed,
                               reason=f"rollback of {', '.join(failed)} failed: {run.steps[failed[0]].rollback.error}")]
    duration = (at - run.started_at).total_seconds() * 1000 if run.started_at else 0.0
    return [RollbackCompleted(run_id=run.id, at=at, duration_ms=duration)]
