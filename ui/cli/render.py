"""How runs look in a terminal: a line per step transition, progress, durations, what steps printed."""
from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from events.circuit import CircuitEvent
from events.run import (
    ApprovalDeadlinePassed, ApprovalRequested, RunEvent, StepFailed, StepRollbackFailed, StepRollbackScheduled,
    StepRolledBack, StepScheduled, StepSucceeded, Unreadable,
)
from projections.sentences import sentence
from services.fold import GateState, Run, dry_run_plan, evolve
from ui.cli.terminal import shown

from ui.cli.exits import (  # the exit codes are read from here too (kept in exits.py: the CLI starts without this)
    DENIED_CODES as DENIED_CODES,
    EXIT_BROKEN_PIPE as EXIT_BROKEN_PIPE,
    EXIT_CANCELLED as EXIT_CANCELLED,
    EXIT_CODES as EXIT_CODES,
    EXIT_COMPLETED as EXIT_COMPLETED,
    EXIT_DENIED as EXIT_DENIED,
    EXIT_FAILED as EXIT_FAILED,
    EXIT_INTERRUPTED as EXIT_INTERRUPTED,
    EXIT_INVALID as EXIT_INVALID,
    EXIT_UNAVAILABLE as EXIT_UNAVAILABLE,
)

if TYPE_CHECKING:
    from projections.run_list import RunSummary   # the list's rows: `status` must not load the projections
    from services.read import Breaker

TAIL_LINES = 5          # lines of a step's output shown under it unless --output asks for all
INDENT = " " * 10


def terminal_line(event: RunEvent) -> str:
    """One line for the terminal: the step it concerns, then what happened."""
    text = sentence(event) or type(event).__name__
    if isinstance(event, ApprovalRequested):
        text += f": {event.message} — playbook approve {event.run_id} {event.step_id}"
    step_id = getattr(event, "step_id", None)
    return shown(f"{step_id}: {text}" if step_id else text)


def _ms(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


class Follower:
    """Prints a live run: the same fold as the services, shown as it changes."""

    HIDDEN = (StepScheduled, StepRollbackScheduled, ApprovalDeadlinePassed)

    def __init__(self, run_id: str, out: TextIO = sys.stdout, as_json: bool = False, full_output: bool = False) -> None:
        self.run = Run(id=run_id)
        self.out, self.as_json, self.full_output = out, as_json, full_output
        self.t0: datetime | None = None

    def know(self, seq: int, event: RunEvent) -> None:
        """An event that happened before what is shown: folded, not printed."""
        evolve(self.run, event, seq)
        self.t0 = self.t0 or event.at

    def show(self, seq: int, event: RunEvent) -> None:
        evolve(self.run, event, seq)
        if self.as_json:
            self.out.write(event_json(seq, event) + "\n")
        elif not isinstance(event, self.HIDDEN):
            self.t0 = self.t0 or event.at
            offset = (event.at - self.t0).total_seconds()
            self.out.write(f"{offset:8.3f}s {self.progress()} {terminal_line(event)}\n")
            if isinstance(event, (StepSucceeded, StepFailed)):
                self.out.writelines(line + "\n" for line in output_lines(event.outputs, self.full_output))
            elif isinstance(event, (StepRolledBack, StepRollbackFailed)):
                self.out.writelines(line + "\n" for line in undo_lines(event.outputs, self.full_output))
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


def event_line(seq: int, event: RunEvent | CircuitEvent, sentence: str, as_json: bool) -> str:
    """One stored event: as JSON, or its sequence, time and type, then the sentence that tells it."""
    if as_json:
        return event_json(seq, event)
    name = event.stored_type if isinstance(event, Unreadable) else type(event).__name__
    return f"{seq:>8} {event.at:%H:%M:%S.%f} {shown(name):<20} {shown(sentence)}"


def list_line(r: RunSummary) -> str:
    """One run of `playbook list`; its playbook's name is whatever a text said, so it is shown escaped."""
    dry = " (dry run)" if r.dry_run else ""
    return shown(f"{r.run_id:<18} {r.status:<11} {r.started_at:%Y-%m-%d %H:%M:%S}  {r.playbook}{dry}  by {r.actor}")


def breaker_line(b: Breaker, now: datetime) -> str:
    """One breaker of `playbook circuits`. An open one past its open time is half-opened by the next call: it
    says so, rather than an "until" already gone."""
    until = ""
    if b.state == "open" and b.until:
        until = (f" until {b.until:%H:%M:%S}Z" if b.until > now else
                 f" until {b.until:%H:%M:%S}Z, over: the next call tests the target")
    why = f"  ({b.reason})" if b.state != "closed" and b.reason else ""
    return shown(f"{b.state:<10} {b.failures:>3} failures in a row  {b.key}{until}{why}")


def event_json(seq: int, event: RunEvent | CircuitEvent) -> str:
    body = msgspec.to_builtins(event)
    return msgspec.json.encode({"seq": seq, **body}).decode()


def output_lines(outputs: Any, full: bool = False, indent: str = INDENT) -> list[str]:
    """What a step printed, indented: the last TAIL_LINES of stdout and of stderr (`! `), or all of it.

    An http_request step shows its body; nothing for a step that printed nothing.
    """
    if not isinstance(outputs, dict):
        return []
    streams = [(mark, outputs.get(name)) for mark, name in (("| ", "stdout"), ("! ", "stderr"))]
    if not any(isinstance(text, str) and text.strip() for _, text in streams):
        streams = [("| ", outputs.get("body"))]
    lines: list[str] = []
    for mark, text in streams:
        if not isinstance(text, str) or not text.strip():
            continue
        written = text.rstrip("\n").splitlines()
        hidden = 0 if full else max(0, len(written) - TAIL_LINES)
        if hidden:
            lines.append(f"{indent}{mark}... {hidden} earlier line(s); --output shows all")
        lines += [f"{indent}{mark}{shown(line)}" for line in written[hidden:]]
    return lines


def undo_lines(outputs: list[dict[str, Any]], full: bool = False, indent: str = INDENT) -> list[str]:
    """What a step's rollback actions printed, each action's under its own mark."""
    lines: list[str] = []
    for number, output in enumerate(outputs, 1):
        printed = output_lines(output, full, indent + "  ")
        if printed:
            lines += [f"{indent}rollback action {number}:", *printed]
    return lines


def status_table(run: Run, full_output: bool = False) -> str:
    started = run.started
    lines = [f"run {run.id}: {run.display_status}"]
    if started:
        lines.append(f"playbook {started.playbook_name!r} started by {started.actor} at {started.at:%Y-%m-%d %H:%M:%S}Z"
                     + (f", environment {started.environment}" if started.environment else ""))
        if started.pin is not None:
            lines.append(f"version {started.pin.version}, {started.pin.digest}")
        if started.on_failure:
            lines.append(f"on failure: {started.on_failure} (chosen at the start, over the playbook's)")
        if started.approval_required:
            lines.append("every step waits for an approval (asked at the start)")
    if run.status == "paused" and run.steering.paused_by:
        reason = run.steering.pause_reason
        lines.append(f"paused by {run.steering.paused_by}" + (f": {reason}" if reason else ""))
    if run.failure:
        lines.append(f"failure: {run.failure}")
    lines += rollback_lines(run)
    for s in run.steps.values():
        # A rejected gate's step failed with the rejection as its error: the gate says it.
        error = "" if s.gate.status == "rejected" else s.attempt.error
        extra = "; ".join(x for x in (error or s.reason, s.attempt.note) if x)
        if s.gate.status:
            extra = f"{gate_text(s.gate)} {extra}".rstrip()
        if s.status == "running" and s.started_at:       # its duration is 0 until it ends: say since when
            extra = f"{extra}; {_running(s.started_at, run.specs[s.id].timeout_seconds if s.id in run.specs else None)}"
            extra = extra.lstrip("; ")
        if due := run.retry_due(s):   # else a long backoff reads as a failed step, run stuck
            extra = f"{extra}; attempt {s.attempt.number + 1} at {_when(due)}".lstrip("; ")
        if s.rollback.status:
            extra = f"{extra}; rollback {s.rollback.status} {s.rollback.error}".strip("; ").rstrip()
        took = _ms(s.attempt.duration_ms)
        lines.append(f"  {s.id:<24} {s.status:<10} attempt {s.attempt.number:<2} {took:>9}  {extra}".rstrip())
        lines += output_lines(s.attempt.outputs, full_output, indent=" " * 4)
        lines += undo_lines(s.rollback.outputs, full_output, indent=" " * 4)
    for q in run.quarantined:
        lines.append(f"quarantined event {q.seq} ({q.event}), not applied: {q.reason}")
    return "\n".join(shown(line) for line in lines)


def gate_text(gate: GateState) -> str:
    """Where the step's gate stands: who approved it so far, or who decided it (and why, for a rejection)."""
    approved = ", ".join(g.actor for g in gate.approvals)
    match gate.status:
        case "requested":
            until = f", waits until {_when(gate.deadline)}" if gate.deadline and not gate.deadline_passed else ""
            return f"gate requested (approved by {approved or 'nobody yet'}{until})"
        case "granted":   # by a quorum, or by the system when its deadline approves it
            return f"gate granted (approved by {', '.join(gate.decided_by) or approved})"
        case "rejected":
            return f"gate rejected by {', '.join(gate.decided_by)}" + (f": {gate.comment}" if gate.comment else "")
    return f"gate {gate.status}" + (f" (approved by {approved})" if approved else "")


def _when(at: datetime) -> str:
    """A time as the run's start is shown: UTC, to the second (a stored time without a zone is UTC already)."""
    return f"{at.astimezone(timezone.utc) if at.tzinfo else at:%Y-%m-%d %H:%M:%S}Z"


def _running(since: datetime, timeout: float | None) -> str:
    return f"since {_when(since)}" + (f", times out at {_when(since + timedelta(seconds=timeout))}" if timeout else "")


def rollback_lines(run: Run) -> list[str]:
    """The rollback's own lines, apart from the run's failure: why and at whose request, and how it failed."""
    asked = run.rollback
    if asked is None:
        return []
    verb = {"rolling_back": "rolling back", "rolled_back": "rolled back"}.get(run.status, "rollback")
    if asked.after_failure:       # its reason is the failure, said above
        lines = [f"{verb} after the failure (on failure: rollback)"]
    else:
        who = asked.actor + (f" for {asked.on_behalf_of}" if asked.on_behalf_of else "")
        lines = [f"{verb}: {asked.reason} (requested by {who})" if asked.reason else f"{verb} (requested by {who})"]
    if asked.failure:
        lines.append(f"rollback failed: {asked.failure}")
    return lines + _not_undone(run)


def _not_undone(run: Run) -> list[str]:
    """What a rollback that ended (failed, or cancelled half-way) left undone, and how to go on."""
    undone = [s for wave in run.rollback_waves for s in wave if run.steps[s].rollback.status != "rolled_back"]
    if not run.finished or not undone:
        return []
    said = {"pending": "not tried", "scheduled": "not started"}
    shown = [f"{s} ({said.get(run.steps[s].rollback.status, run.steps[s].rollback.status)})" for s in undone[:10]]
    more = f" and {len(undone) - 10} more" if len(undone) > 10 else ""
    return [f"not undone: {', '.join(shown)}{more}; `playbook rollback {run.id}` tries them again"]


def plan_table(run: Run) -> str:
    """A dry run's plan: the order steps would take, what each would do and why."""
    lines = [f"dry run {run.id} of {run.playbook.name!r}: nothing was executed", "",
             f"{'wave':<5} {'step':<24} {'action':<13} would"]
    for p in dry_run_plan(run):
        detail = "; ".join(x for x in (p.why, p.group and f"parallel group {p.group}", p.gate) if x)
        lines.append(f"{p.wave:<5} {p.step_id:<24} {p.action:<13} {p.would}" + (f"  ({detail})" if detail else ""))
    return "\n".join(lines)


def table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows as aligned columns, the first row the heading."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
