"""How runs look in a terminal: a line per step transition, progress, durations."""
from __future__ import annotations

import sys
from datetime import datetime
from typing import TextIO

import msgspec

from events.run import (
    ApprovalAttemptRefused, ApprovalDeadlinePassed, ApprovalGiven, ApprovalGranted, ApprovalRejected,
    ApprovalRequested, ApprovalTimedOut, RollbackCompleted, RollbackFailed, RollbackStarted, RunCancelled,
    RunCancelRequested, RunCompleted, RunEvent, RunFailed, RunPaused, RunResumed, RunStarted, StepFailed,
    StepNotRetried, StepRemediated, StepRemediationFailed, StepRemediationStarted, StepRetryScheduled,
    StepRollbackFailed, StepRollbackScheduled, StepRollbackStarted, StepRolledBack, StepScheduled,
    StepSkipped, StepStarted, StepSucceeded,
)
from events.circuit import (
    CircuitCallFailed, CircuitCallSucceeded, CircuitClosed, CircuitEvent, CircuitHalfOpened, CircuitOpened,
    CircuitReset, CircuitTrialStarted,
)
from services.run.state import Run, evolve

EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID, EXIT_CANCELLED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4


def describe(event: RunEvent) -> str:
    """One line that says what happened, in the words of the domain."""
    match event:
        case RunStarted():
            env = f" in {event.environment}" if event.environment else ""
            return f"run of {event.playbook.name!r}{env} started by {event.actor} ({len(event.playbook.steps)} steps)"
        case StepScheduled():
            why = f" ({event.reason})" if event.reason else ""
            return f"{event.step_id}: scheduled, attempt {event.attempt}{why}"
        case StepStarted():
            return f"{event.step_id}: started on {event.executor}"
        case StepSucceeded():
            return f"{event.step_id}: succeeded in {_ms(event.duration_ms)}"
        case StepFailed():
            return f"{event.step_id}: failed ({event.category}) after {_ms(event.duration_ms)}: {event.error}"
        case StepSkipped():
            return f"{event.step_id}: skipped, {event.reason}"
        case RunPaused():
            return f"paused by {event.actor}" + (f": {event.reason}" if event.reason else "")
        case RunResumed():
            return f"resumed by {event.actor}"
        case RunCancelRequested():
            return f"cancel requested by {event.actor}" + (f": {event.reason}" if event.reason else "")
        case RunCancelled():
            return "run cancelled"
        case RunCompleted():
            return f"run completed in {_ms(event.duration_ms)}"
        case RunFailed():
            return f"run failed after {_ms(event.duration_ms)}: {event.reason}"
        case StepRetryScheduled():
            return f"{event.step_id}: retry as attempt {event.attempt} in {event.delay_seconds:g}s: {event.reason}"
        case StepRemediationStarted():
            return f"{event.step_id}: remediating: {event.reason}"
        case StepRemediated():
            return f"{event.step_id}: remediated by error handler {event.handler + 1}"
        case StepRemediationFailed():
            return f"{event.step_id}: remediation by error handler {event.handler + 1} failed: {event.error}"
        case StepNotRetried():
            return f"{event.step_id}: not retried: {event.reason}"
        case ApprovalRequested():
            who = ", ".join(event.required_approvers) or "anyone"
            until = f" by {event.deadline:%H:%M:%S}Z" if event.deadline else ""
            return (f"{event.step_id}: waiting for approval ({event.min_approvals} of {who}){until}: {event.message}"
                    f" — playbook approve {event.run_id} {event.step_id}")
        case ApprovalGiven():
            return f"{event.step_id}: approved by {event.actor}" + (f": {event.comment}" if event.comment else "")
        case ApprovalGranted(by_timeout=True):
            return f"{event.step_id}: approved by the system after the timeout"
        case ApprovalGranted():
            return f"{event.step_id}: gate open, approved by {', '.join(event.approvers)}"
        case ApprovalRejected():
            return f"{event.step_id}: rejected by {event.actor}" + (f": {event.comment}" if event.comment else "")
        case ApprovalDeadlinePassed():
            return f"{event.step_id}: approval deadline passed"
        case ApprovalTimedOut():
            return f"{event.step_id}: approval timed out"
        case ApprovalAttemptRefused():
            return f"{event.step_id}: {event.actor} tried to {event.decision}, refused: {event.reason}"
        case RollbackStarted():
            order = " then ".join("+".join(wave) for wave in event.waves) or "nothing"
            return f"rollback started by {event.actor} ({event.reason}): {order}"
        case StepRollbackScheduled():
            return f"{event.step_id}: rollback scheduled"
        case StepRollbackStarted():
            return f"{event.step_id}: rolling back on {event.executor}"
        case StepRolledBack():
            return f"{event.step_id}: rolled back in {_ms(event.duration_ms)}"
        case StepRollbackFailed():
            return f"{event.step_id}: rollback failed ({event.category}): {event.error}"
        case RollbackCompleted():
            return "rollback completed: run rolled back"
        case RollbackFailed():
            return f"rollback failed: {event.reason}"
    return type(event).__name__


def describe_circuit(event: CircuitEvent) -> str:
    """One line for a breaker's event: which call, which transition and why."""
    match event:
        case CircuitCallFailed():
            return f"call by {event.run_id}/{event.step_id} failed: {event.error}"
        case CircuitCallSucceeded():
            return f"call by {event.run_id}/{event.step_id} succeeded"
        case CircuitOpened():
            return f"OPENED until {event.until:%H:%M:%S}Z: {event.reason}"
        case CircuitHalfOpened():
            return "HALF-OPEN: the open time passed; trial calls may test the target"
        case CircuitTrialStarted():
            return f"trial call by {event.run_id}/{event.step_id}"
        case CircuitClosed():
            return f"CLOSED: {event.reason}"
        case CircuitReset():
            return f"RESET by hand by {event.actor}"
    return type(event).__name__


def _ms(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


class Follower:
    """Prints a live run: the same fold as the services, shown as it changes."""

    HIDDEN = (StepScheduled, StepRollbackScheduled, ApprovalDeadlinePassed)

    def __init__(self, run_id: str, out: TextIO = sys.stdout, as_json: bool = False) -> None:
        self.run = Run(id=run_id)
        self.out, self.as_json = out, as_json
        self.t0: datetime | None = None

    def show(self, seq: int, event: RunEvent) -> None:
        evolve(self.run, event, seq)
        if self.as_json:
            self.out.write(event_json(seq, event) + "\n")
        elif not isinstance(event, self.HIDDEN):
            self.t0 = self.t0 or event.at
            offset = (event.at - self.t0).total_seconds()
            self.out.write(f"{offset:8.3f}s {self.progress()} {describe(event)}\n")
        self.out.flush()

    def progress(self) -> str:
        steps = self.run.steps.values()
        done = sum(1 for s in steps if s.status in ("succeeded", "failed", "skipped"))
        total = len(self.run.steps) or 1
        width = 20
        filled = width * done // total
        return f"[{'#' * filled}{'.' * (width - filled)}] {done:>3}/{len(self.run.steps):<3}"

    def exit_code(self) -> int:
        return {"completed": EXIT_COMPLETED, "cancelled": EXIT_CANCELLED}.get(self.run.status, EXIT_FAILED)


def event_json(seq: int, event: RunEvent | CircuitEvent) -> str:
    body = msgspec.to_builtins(event)
    return msgspec.json.encode({"seq": seq, **body}).decode()


def status_table(run: Run) -> str:
    started = run.started
    lines = [f"run {run.id}: {run.display_status}"]
    if started:
        lines.append(f"playbook {started.playbook.name!r} started by {started.actor} at {started.at:%Y-%m-%d %H:%M:%S}Z"
                     + (f", environment {started.environment}" if started.environment else ""))
    if run.failure:
        lines.append(f"failure: {run.failure}")
    for s in run.steps.values():
        extra = s.error or s.reason
        if s.gate:
            who = ", ".join(g.actor for g in s.approvals) or "nobody yet"
            extra = f"gate {s.gate} (approved by {who}) {extra}".rstrip()
        if s.rollback:
            extra = f"{extra}; rollback {s.rollback} {s.rollback_error}".strip("; ").rstrip()
        lines.append(f"  {s.id:<24} {s.status:<10} attempt {s.attempt:<2} {_ms(s.duration_ms):>9}  {extra}")
    return "\n".join(lines)


def plan_table(run: Run) -> str:
    """A dry run's plan: the order steps would take, what each would do and why."""
    from services.run.dry_run import plan

    lines = [f"dry run {run.id} of {run.playbook.name!r}: nothing was executed", "",
             f"{'wave':<5} {'step':<24} {'action':<13} would"]
    for p in plan(run):
        detail = "; ".join(x for x in (p.why, p.group and f"parallel group {p.group}", p.gate) if x)
        lines.append(f"{p.wave:<5} {p.step_id:<24} {p.action:<13} {p.would}" + (f"  ({detail})" if detail else ""))
    return "\n".join(lines)
