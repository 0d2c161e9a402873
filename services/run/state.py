"""A run's state, folded from its events. The one fold every service and the CLI use."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from events.playbook import Playbook, Step
from events.run import (
    RunCancelled, RunCancelRequested, RunCompleted, RunEvent, RunFailed, RunPaused,
    RunResumed, RunStarted, StepFailed, StepScheduled, StepSkipped, StepStarted,
    StepSucceeded,
)

RunStatus = Literal["new", "running", "paused", "cancelling", "completed", "failed", "cancelled"]
StepStatus = Literal["pending", "scheduled", "running", "succeeded", "failed", "skipped"]
FINISHED_RUN: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


@dataclass(slots=True)
class StepState:
    id: str
    status: StepStatus = "pending"
    attempt: int = 0               # the latest attempt scheduled (1-based)
    scheduled_seq: int = 0         # stream sequence of the latest StepScheduled
    executor: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float = 0.0
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    category: str = ""
    reason: str = ""               # why it was skipped, or rescheduled


@dataclass(slots=True)
class Run:
    id: str
    version: int = 0               # stream sequence of the last event applied; 0 = no run
    status: RunStatus = "new"
    started: RunStarted | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    paused_by: str | None = None
    cancel_requested_by: str | None = None
    failure: str = ""
    event_count: int = 0
    specs: dict[str, Step] = field(default_factory=dict)
    # In a clone, the steps it has copied; the rest are shared with the original and
    # copied on first write. None: this run owns all its steps.
    owned: set[str] | None = None

    @property
    def exists(self) -> bool:
        return self.started is not None

    @property
    def playbook(self) -> Playbook:
        assert self.started is not None
        return self.started.playbook

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_RUN

    def clone(self) -> Run:
        """A copy the decider can fold ahead on without touching this one (copy on write)."""
        return replace(self, steps=dict(self.steps), owned=set())

    def step(self, step_id: str) -> StepState:
        """The step's state, for changing it."""
        step = self.steps[step_id]
        if self.owned is not None and step_id not in self.owned:
            step = self.steps[step_id] = replace(step)
            self.owned.add(step_id)
        return step


def fold(run_id: str, events: list[tuple[int, RunEvent]]) -> Run:
    run = Run(id=run_id)
    for seq, event in events:
        evolve(run, event, seq)
    return run


def evolve(run: Run, event: RunEvent, seq: int = 0) -> Run:
    """Apply one event in place (the fold is hot: no copies here)."""
    if seq:
        run.version = seq
    run.event_count += 1
    match event:
        case StepScheduled(step_id=step_id, attempt=attempt, reason=reason):
            step = run.step(step_id)
            step.status, step.attempt, step.scheduled_seq, step.reason = "scheduled", attempt, seq, reason
        case StepStarted(step_id=step_id, executor=executor, at=at):
            step = run.step(step_id)
            step.status, step.executor, step.started_at = "running", executor, at
        case StepSucceeded(step_id=step_id, outputs=outputs, duration_ms=duration, at=at):
            step = run.step(step_id)
            step.status, step.outputs, step.duration_ms, step.finished_at = "succeeded", outputs, duration, at
            step.error = step.category = ""
        case StepFailed(step_id=step_id, error=error, category=category, outputs=outputs,
                        duration_ms=duration, at=at):
            step = run.step(step_id)
            # An interrupted attempt (its executor died) is not the step's failure:
            # the step goes back to pending and runs again as the next attempt.
            step.status = "pending" if category == "interrupted" else "failed"
            step.error, step.category, step.outputs = error, category, outputs
            step.duration_ms, step.finished_at = duration, at
        case StepSkipped(step_id=step_id, reason=reason, at=at):
            step = run.step(step_id)
            step.status, step.reason, step.finished_at = "skipped", reason, at
        case RunStarted(at=at):
            run.started, run.status, run.started_at = event, "running", at
            run.steps = {step.id: StepState(id=step.id) for step in event.playbook.steps}
            run.specs = {step.id: step for step in event.playbook.steps}
        case RunPaused(actor=actor):
            run.status, run.paused_by = "paused", actor
        case RunResumed():
            run.status, run.paused_by = "running", None
        case RunCancelRequested(actor=actor):
            run.status, run.cancel_requested_by = "cancelling", actor
        case RunCancelled(at=at):
            run.status, run.finished_at = "cancelled", at
        case RunCompleted(at=at):
            run.status, run.finished_at = "completed", at
        case RunFailed(reason=reason, at=at):
            run.status, run.finished_at, run.failure = "failed", at, reason
    return run
