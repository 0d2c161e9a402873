"""How runs look in a terminal: a line per step transition, progress, durations."""
from __future__ import annotations

import sys
from datetime import datetime
from typing import TextIO

import msgspec

from events.circuit import CircuitEvent
from events.run import ApprovalDeadlinePassed, ApprovalRequested, RunEvent, StepRollbackScheduled, StepScheduled
from projections.sentences import sentence
from services.read import Run, dry_run_plan, evolve

EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID, EXIT_CANCELLED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
EXIT_DENIED = 5     # no valid token, or the token's grants do not allow it (the refusal is recorded)
DENIED_CODES = ("unauthenticated", "forbidden", "forged_actor", "too_many_failures")


def terminal_line(event: RunEvent) -> str:
    """One line for the terminal: the step it concerns, then what happened."""
    text = sentence(event) or type(event).__name__
    if isinstance(event, ApprovalRequested):
        text += f": {event.message} — playbook approve {event.run_id} {event.step_id}"
    step_id = getattr(event, "step_id", None)
    return f"{step_id}: {text}" if step_id else text


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
            self.out.write(f"{offset:8.3f}s {self.progress()} {terminal_line(event)}\n")
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
        extra = "; ".join(x for x in (s.attempt.error or s.reason, s.attempt.note) if x)
        if s.gate.status:
            who = ", ".join(g.actor for g in s.gate.approvals) or "nobody yet"
            extra = f"gate {s.gate.status} (approved by {who}) {extra}".rstrip()
        if s.rollback.status:
            extra = f"{extra}; rollback {s.rollback.status} {s.rollback.error}".strip("; ").rstrip()
        took = _ms(s.attempt.duration_ms)
        lines.append(f"  {s.id:<24} {s.status:<10} attempt {s.attempt.number:<2} {took:>9}  {extra}")
    for q in run.quarantined:
        lines.append(f"quarantined event {q.seq} ({q.event}), not applied: {q.reason}")
    return "\n".join(lines)


def plan_table(run: Run) -> str:
    """A dry run's plan: the order steps would take, what each would do and why."""
    lines = [f"dry run {run.id} of {run.playbook.name!r}: nothing was executed", "",
             f"{'wave':<5} {'step':<24} {'action':<13} would"]
    for p in dry_run_plan(run):
        detail = "; ".join(x for x in (p.why, p.group and f"parallel group {p.group}", p.gate) if x)
        lines.append(f"{p.wave:<5} {p.step_id:<24} {p.action:<13} {p.would}" + (f"  ({detail})" if detail else ""))
    return "\n".join(lines)
