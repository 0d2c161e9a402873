"""Gate decisions, pure: request approval, record an approval or a rejection, the deadline.

A refused attempt raises `Refused`, which carries the `ApprovalAttemptRefused` event
the command service records for the audit before answering no.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from events import subjects
from events.playbook import ApprovalGate
from events.run import (
    ApprovalAttemptRefused, ApprovalGiven, ApprovalGranted, ApprovalRejected, ApprovalRequested,
    ApprovalTimedOut, RunEvent, StepFailed,
)
from services.domain.run.quorum import eligible_entries, quorum
from services.domain.run.state import Run, StepState
from services.errors import CommandRejected, PlaybookError
from services.playbook.interpolate import Context, resolve

if TYPE_CHECKING:   # the commands' types only: reading a run's gates needs no command
    from services.domain.run.commands import AnswerGate, ExpireGate


class Refused(CommandRejected):
    """An approval or rejection that may not count; `record` goes into the audit trail."""

    def __init__(self, message: str, record: ApprovalAttemptRefused) -> None:
        super().__init__(message, "approval_refused")
        self.record = record


def approvals_needed(gate: ApprovalGate) -> int:
    """How many entries must each be satisfied by a distinct person; without entries, how many people."""
    entries = len(gate.required_approvers)
    if not entries:
        return max(gate.min_approvals or 1, 1)
    return min(gate.min_approvals, entries) if gate.min_approvals else entries


def request(run: Run, step: StepState, ctx: Context, at: datetime) -> RunEvent:
    """The event that opens the gate for people: the request, or a failure if it cannot be asked."""
    gate = run.gate_of(step.id)
    assert gate is not None
    try:
        message = str(resolve(gate.message, ctx)) if gate.message else f"Approve step {step.id}?"
    except PlaybookError as err:
        return StepFailed(run_id=run.id, at=at, step_id=step.id, attempt=step.attempt.number + 1,
                          error=f"cannot write the approval message: {err}", category="configuration")
    deadline = at + timedelta(seconds=gate.timeout_seconds) if gate.timeout_seconds else None
    return ApprovalRequested(run_id=run.id, at=at, step_id=step.id, message=message,
                             required_approvers=list(gate.required_approvers), min_approvals=approvals_needed(gate),
                             deadline=deadline, auto_approve_after_timeout=gate.auto_approve_after_timeout)


def answer(run: Run, cmd: AnswerGate, at: datetime) -> list[RunEvent]:
    """A person's approval or rejection: recorded, or refused with the reason (and the refusal recorded)."""
    verb = "approve" if cmd.approve else "reject"

    def refuse(reason: str) -> Refused:
        record = ApprovalAttemptRefused(run_id=run.id, at=at, step_id=cmd.step_id, actor=cmd.actor,
                                        on_behalf_of=cmd.on_behalf_of, decision=verb, reason=reason)
        return Refused(reason, record)

    step = run.steps.get(cmd.step_id)
    if step is None:
        raise refuse(f"run {run.id} has no step {cmd.step_id!r}")
    if step.gate.status != "requested":
        state = f"its gate is {step.gate.status}" if step.gate.status else "it has no open approval gate"
        raise refuse(f"step {step.id} is not waiting for approval ({state})")
    if run.finished or run.status == "cancelling":     # its gate still open, the run over or ending
        raise refuse(f"run {run.id} is {run.display_status}; its gates take no more answers")
    # The deadline's timer records its passing; a timer held up (its service down) must not keep the window open.
    if step.gate.deadline_passed or (step.gate.deadline is not None and at >= step.gate.deadline):
        raise refuse(f"the approval window of step {step.id} closed at {step.gate.deadline:%Y-%m-%d %H:%M:%S}Z")
    gate = run.gate_of(step.id)
    assert gate is not None
    entries, person = gate.required_approvers, cmd.person
    if entries and not eligible_entries(entries, person, cmd.groups):
        raise refuse(f"{person} is not a required approver of step {step.id}: it needs {', '.join(entries)}")
    if not cmd.approve:
        return [ApprovalRejected(run_id=run.id, at=at, step_id=step.id, actor=cmd.actor,
                                 on_behalf_of=cmd.on_behalf_of, comment=cmd.comment),
                _rejected(run, step, person, cmd.comment, at)]
    if not gate.allow_self_approval and (starter := started_by(run, {cmd.actor, person})):
        did = "started" if starter in _starters(run) else "retried"
        raise refuse(f"{person} {did} this run and cannot approve it (the gate does not allow self-approval)"
                     if starter == person else
                     f"{cmd.actor} {did} this run and cannot approve it, for anyone (the gate does not allow "
                     "self-approval)")
    if any(counted(given) == person for given in step.gate.approvals):
        raise refuse(f"{person} has already approved step {step.id}")
    return [ApprovalGiven(run_id=run.id, at=at, step_id=step.id, actor=cmd.actor, on_behalf_of=cmd.on_behalf_of,
                          groups=list(cmd.groups), comment=cmd.comment)]


def _starters(run: Run) -> set[str | None]:
    assert run.started is not None
    return {run.started.actor, run.started.on_behalf_of}


def started_by(run: Run, people: set[str]) -> str | None:
    """Which of these people set this run going: started it, or retried it (which reran what the gate guards)."""
    for who in sorted(people):
        if who in _starters(run) or who in run.retried_by:
            return who
    return None


def counted(given: ApprovalGiven) -> str:
    """The person an approval counts for: the one an admin acted for, else the approver."""
    return given.on_behalf_of or given.actor


def open_gates(run: Run, at: datetime) -> list[RunEvent]:
    """Grant every gate whose approvals now make a quorum (also while the run is paused)."""
    granted: list[RunEvent] = []
    if not run.gates_waiting:
        return granted
    for step in run.steps.values():
        if step.gate.status != "requested" or not step.gate.approvals:
            continue
        gate = run.gate_of(step.id)
        assert gate is not None
        approvers = [(counted(given), given.groups) for given in step.gate.approvals]
        entries = gate.required_approvers
        needed = approvals_needed(gate)
        if entries:
            opened_by = quorum(entries, approvers, needed)
        else:   # anyone may approve; each person counts once (a second approval by one is refused)
            opened_by = [person for person, _ in approvers] if len(approvers) >= needed else None
        if opened_by is not None:
            granted.append(ApprovalGranted(run_id=run.id, at=at, step_id=step.id, approvers=opened_by,
                                           actor=step.gate.approvals[-1].actor))
    return granted


def expire(run: Run, cmd: ExpireGate, at: datetime) -> list[RunEvent]:
    """The gate's deadline fired: approve by timeout, or time it out and fail the step."""
    step = run.steps.get(cmd.step_id)
    if step is None or step.gate.status != "requested" or run.finished:
        return []   # decided before the deadline: the timer came too late to matter
    gate = run.gate_of(step.id)
    assert gate is not None
    if gate.auto_approve_after_timeout:
        return [ApprovalGranted(run_id=run.id, at=at, step_id=step.id, actor="system", by_timeout=True)]
    return [ApprovalTimedOut(run_id=run.id, at=at, step_id=step.id), _timed_out(run, step, gate, at)]


def failure_of(run: Run, step: StepState, at: datetime) -> StepFailed:
    """The step's failure, for a gate decided against it whose StepFailed was not stored (the process that
    decided went between the two appends): the same failure the decision would have written."""
    gate = run.gate_of(step.id)
    assert gate is not None and step.gate.status in ("rejected", "timed_out")
    if step.gate.status == "rejected":
        return _rejected(run, step, step.gate.decided_by[0], step.gate.comment, at)
    return _timed_out(run, step, gate, at)


def _rejected(run: Run, step: StepState, person: str, comment: str, at: datetime) -> StepFailed:
    return StepFailed(run_id=run.id, at=at, step_id=step.id, attempt=step.attempt.number + 1, category="authorization",
                      error=f"approval rejected by {person}" + (f": {comment}" if comment else ""))


def _timed_out(run: Run, step: StepState, gate: ApprovalGate, at: datetime) -> StepFailed:
    return StepFailed(run_id=run.id, at=at, step_id=step.id, attempt=step.attempt.number + 1, category="timeout",
                      error=f"approval timed out after {gate.timeout_seconds:g}s")


def obsoleted_timer(event: RunEvent) -> str | None:
    """The deadline timer a decided gate no longer needs: cancelled in the same write as the decision."""
    if isinstance(event, (ApprovalGranted, ApprovalRejected)):
        return subjects.approval_timer(event.run_id, event.step_id)
    return None
