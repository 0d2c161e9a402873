"""A run's state, folded from its events. The one fold every service and the CLI use."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import msgspec
from msgspec import Struct, field
from msgspec.structs import replace

from events.playbook import ApprovalGate, ErrorHandler, FailurePolicy, Plan, Playbook, Step
from events.run import (
    ApprovalDeadlinePassed, ApprovalGiven, ApprovalGranted, ApprovalRejected, ApprovalRequested, ApprovalTimedOut,
    RollbackCompleted, RollbackFailed, RollbackStarted, RunCancelled, RunCancelRequested,
    RunCompleted, RunEvent, RunFailed, RunPaused, RunResumed, RunRetried, RunStarted, StepFailed,
    StepRollbackFailed, StepRollbackScheduled, StepRollbackStarted, StepRolledBack,
    StepNotRetried, StepRemediated, StepRemediationFailed, StepRemediationStarted, StepRetryScheduled, StepScheduled,
    StepSkipped, StepStarted, StepSucceeded, Unreadable,
)
from services.domain.run import readiness
from services.domain.run.fit import misfit, unschedulable
from services.errors import UnknownPlaybook

RunStatus = Literal["new", "running", "paused", "cancelling", "completed", "failed", "cancelled",
                    "rolling_back", "rolled_back", "rollback_failed"]
StepStatus = Literal["pending", "scheduled", "running", "succeeded", "failed", "skipped"]
GateStatus = Literal["", "requested", "granted", "rejected", "timed_out"]
RetryStatus = Literal["", "deciding", "waiting"]
RemediationStatus = Literal["", "running", "done", "failed"]
RollbackStatus = Literal["", "pending", "scheduled", "running", "rolled_back", "failed"]
# Every status a run shows (`display_status`), the active ones first; the dashboard's list is generated from it.
RUN_STATUSES: tuple[str, ...] = ("running", "waiting_approval", "paused", "cancelling", "rolling_back",
                                 "completed", "failed", "cancelled", "rolled_back", "rollback_failed")
FINISHED_RUN: frozenset[str] = frozenset({"completed", "failed", "cancelled", "rolled_back", "rollback_failed"})
ACTIVE_RUN: frozenset[str] = frozenset(RUN_STATUSES) - FINISHED_RUN
# The gate of a step without one, in a run started with `approval_required`: any approver but the starter.
APPROVAL_REQUIRED = ApprovalGate()


class AttemptState(Struct):
    """The latest attempt of the step's own action."""

    number: int = 0                # the latest attempt scheduled (1-based); 0: none yet
    scheduled_seq: int = 0         # stream sequence of its StepScheduled
    executor: str | None = None
    lease: int = 0                 # its lease's sequence in PB_LEASES (0: started before leases)
    duration_ms: float = 0.0
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    category: str = ""
    note: str = ""                 # what was cut from its outcome to store it

    def copy(self) -> AttemptState:
        return AttemptState(self.number, self.scheduled_seq, self.executor, self.lease, self.duration_ms,
                            self.outputs, self.error, self.category, self.note)


class RetryState(Struct):
    """Where a failed attempt stands with the resilience service (the step's `retry` policy applies)."""

    status: RetryStatus = ""
    due: datetime | None = None    # when the next attempt is scheduled, while `waiting`
    remediation: RemediationStatus = ""   # an error handler's, for the latest failed attempt
    first: int = 1                 # the attempt the policy counts from: a retried run starts it afresh

    def copy(self) -> RetryState:
        return RetryState(self.status, self.due, self.remediation, self.first)


class GateState(Struct):
    """The step's approval gate (its `approval_gate`), once reached."""

    status: GateStatus = ""
    message: str = ""              # as asked, with its ${...} resolved
    deadline: datetime | None = None
    deadline_passed: bool = False
    approvals: list[ApprovalGiven] = field(default_factory=list)
    decided_by: list[str] = field(default_factory=list)
    comment: str = ""              # why it was rejected, if it was

    def copy(self) -> GateState:
        return GateState(self.status, self.message, self.deadline, self.deadline_passed, self.approvals,
                         self.decided_by, self.comment)


class RollbackState(Struct):
    """Undoing the step (its `rollback` actions), once a rollback includes it."""

    status: RollbackStatus = ""
    attempt: int = 0
    scheduled_seq: int = 0
    executor: str | None = None
    lease: int = 0
    error: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def copy(self) -> RollbackState:
        return RollbackState(self.status, self.attempt, self.scheduled_seq, self.executor, self.lease, self.error,
                             self.outputs)


class StepState(Struct):
    """One step of a run: where it stands, and its latest attempt, retry, gate and rollback."""

    id: str
    status: StepStatus = "pending"
    reason: str = ""               # why it was skipped, or rescheduled
    ran: bool = False              # some attempt started: there may be something to roll back
    started_at: datetime | None = None
    finished_at: datetime | None = None
    finished_order: int = 0        # when it finished, among the run's steps (rollback goes in reverse)
    attempt: AttemptState = field(default_factory=AttemptState)
    retry: RetryState = field(default_factory=RetryState)
    gate: GateState = field(default_factory=GateState)
    rollback: RollbackState = field(default_factory=RollbackState)

    def copy(self) -> StepState:
        """A copy that shares nothing it could change (lists are replaced, never changed in place)."""
        return StepState(self.id, self.status, self.reason, self.ran, self.started_at, self.finished_at,
                         self.finished_order, self.attempt.copy(), self.retry.copy(), self.gate.copy(),
                         self.rollback.copy())


class Quarantined(Struct, frozen=True):
    """An event that does not fit the run's state where it stands: kept aside, with why."""

    seq: int
    event: str                     # its type
    reason: str
    step_id: str | None = None


class Steering(Struct, frozen=True):
    """Who paused, resumed or cancelled the run last, and why; replaced whole on change."""

    paused_by: str | None = None
    pause_reason: str = ""
    resumed_by: str | None = None
    cancel_requested_by: str | None = None
    cancel_reason: str = ""
    cancel_fails: bool = False     # the engine's give-up (RunCancelRequested.fails): the run ends failed


class RollbackRequest(Struct, frozen=True):
    """Why the run is being undone and who asked, kept apart from the run's own failure; replaced whole on change."""

    reason: str
    actor: str
    on_behalf_of: str | None = None
    after_failure: bool = False    # the engine's, under `on_failure: rollback`: `reason` is the run's failure
    failure: str = ""              # why the rollback itself failed


class Run(Struct):
    """A run as its events so far leave it (version: the last one applied)."""

    id: str
    version: int = 0               # stream sequence of the last event applied; 0 = no run
    status: RunStatus = "new"
    started: RunStarted | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steering: Steering = Steering()
    failure: str = ""              # what failed in the run and why; a rollback keeps it
    rollback: RollbackRequest | None = None
    event_count: int = 0
    phase: Literal["forward", "rollback"] = "forward"
    gates_waiting: int = 0          # gates asked and not yet decided
    rollback_waves: list[list[str]] = field(default_factory=list)   # RollbackStarted's, undone in order
    finished_steps: int = 0
    specs: dict[str, Step] = field(default_factory=dict)
    # Indexes the decider reads on every decision, so it does not scan every step.
    order: dict[str, int] = field(default_factory=dict)  # playbook order, shared with a run folded ahead
    failures: int = 0                                  # step failures ever (not interruptions)
    # What may start next and what is going on (readiness.py): each step's needs not settled yet,
    # the pending steps with none, counts of steps not settled, running, waiting on a retry;
    # who needs each step (shared with a run folded ahead).
    waiting: dict[str, int] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)
    unsettled: int = 0
    running: int = 0
    retrying: int = 0
    dependents: dict[str, list[str]] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)   # replaced whole on change
    retried_by: frozenset[str] = frozenset()   # who retried it, and for whom: like its starter, no approver of it
    reopened: int = 0              # stream sequence of its last reopening (a retry, a rollback asked after its end)
    # Folding ahead (`ahead`): what to put back in the original's dicts. None: a run of its own.
    undo: Undo | None = None

    @property
    def exists(self) -> bool:
        return self.started is not None

    @property
    def playbook(self) -> Playbook:
        assert self.started is not None
        return playbook_of(self.started)[0]

    @property
    def plan(self) -> Plan:
        assert self.started is not None
        return playbook_of(self.started)[1]

    def gate_of(self, step_id: str) -> ApprovalGate | None:
        """The step's approval gate: its own, else, in a run started with `approval_required`, the start's."""
        gate = self.specs[step_id].approval_gate
        if gate is None and self.started is not None and self.started.approval_required:
            return APPROVAL_REQUIRED
        return gate

    @property
    def on_failure(self) -> FailurePolicy:
        """What a failed step does to the run: the policy chosen at its start, else the playbook's."""
        assert self.started is not None
        return self.started.on_failure or self.playbook.on_failure

    @property
    def error_handlers(self) -> list[ErrorHandler]:
        """The playbook's error handlers, then the engine's (numbered on in that order)."""
        assert self.started is not None
        return self.playbook.error_handlers + self.started.engine_error_handlers

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_RUN

    @property
    def display_status(self) -> str:
        """The status as people read it: a running run held only by gates is waiting_approval."""
        if self.status == "running" and self.gates_waiting:
            steps = self.steps.values()
            if (any(s.gate.status == "requested" for s in steps)
                    and not any(s.status in ("scheduled", "running") for s in steps)):
                return "waiting_approval"
        return self.status

    @property
    def parked(self) -> bool:
        """Waiting on people (a gate, a pause) with nothing in flight: nothing to hold in memory for it."""
        if self.status == "running":
            return self.display_status == "waiting_approval"
        return self.status == "paused" and not any(
            s.status == "running" or s.rollback.status == "running" for s in self.steps.values())

    def retry_due(self, step: StepState) -> datetime | None:
        """When the step's next attempt comes, if it waits on a retry the run will still make (a cancelled or
        rolled back run makes none: its timer may fire, and changes nothing)."""
        going_on = self.status in ("running", "paused") and self.phase == "forward"
        return step.retry.due if step.retry.status == "waiting" and going_on else None

    def step(self, step_id: str) -> StepState:
        """The step's state, for changing it."""
        steps, undo = self.steps, self.undo
        step = steps[step_id]
        if undo is not None and step_id not in undo.copied:   # folding ahead: the step is copied on first write
            undo.copied.add(step_id)
            if steps is undo.steps:
                undo.old_steps[step_id] = step
            step = steps[step_id] = step.copy()
        return step


class Undo:
    """What a run folded ahead changed in the dicts it shares with its original, to put back.

    Copying a run's step table for every decision cost ~0.16 ms at 10,000 steps, three times per
    step; this costs what the decision changes. A step is copied on its first write (the state
    it replaces kept here); a count in `waiting` keeps its old value. A dict the fold made anew
    (a retry with another playbook replaces them) belongs to the run ahead alone: nothing to put
    back there, though the steps it shares are still copied before they change.
    """

    __slots__ = ("steps", "waiting", "copied", "old_steps", "old_waiting")

    def __init__(self, run: Run) -> None:
        self.steps, self.waiting = run.steps, run.waiting
        self.copied: set[str] = set()
        self.old_steps: dict[str, StepState] = {}
        self.old_waiting: dict[str, int] = {}

    def put_back(self) -> None:
        self.steps.update(self.old_steps)
        self.waiting.update(self.old_waiting)


@contextlib.contextmanager
def ahead(run: Run) -> Iterator[Run]:
    """A run to fold ahead on, for the length of the block: a copy of `run` that shares its step table
    and counts, whose changes to them are put back when the block ends. `run` must not be read meanwhile
    (the decider's block is synchronous)."""
    undo = Undo(run)
    try:
        yield replace(run, undo=undo, ready=set(run.ready))
    finally:
        undo.put_back()


def playbook_of(started: RunStarted) -> tuple[Playbook, Plan]:
    """The run's playbook and plan: embedded (older runs), or resolved by the reader before folding."""
    if started.playbook is None or started.plan is None:
        pin = started.pin.digest if started.pin is not None else "none"
        raise UnknownPlaybook(f"run {started.run_id}: its playbook (pinned {pin}) was not resolved before folding")
    return started.playbook, started.plan


def fold(run_id: str, events: list[tuple[int, RunEvent]]) -> Run:
    run = Run(id=run_id)
    for seq, event in events:
        evolve(run, event, seq)
    return run


def _set_aside(run: Run, event: RunEvent, seq: int, reason: str) -> Run:
    """Quarantine an event that does not fit (services/domain/run/fit.py): kept with why, nothing else changes."""
    name = event.stored_type if isinstance(event, Unreadable) else type(event).__name__
    run.quarantined = [*run.quarantined, Quarantined(seq, name, reason, getattr(event, "step_id", None))]
    return run


def evolve(run: Run, event: RunEvent, seq: int = 0) -> Run:
    """Apply one event in place (the fold is hot: no copies here)."""
    if seq:
        run.version = seq
    run.event_count += 1
    if (reason := misfit(run, event)) is not None:
        return _set_aside(run, event, seq, reason)
    match event:
        case StepScheduled(step_id=step_id, attempt=attempt, reason=reason):
            if run.status == "cancelling" or run.finished or run.phase == "rollback":
                return run   # a retry's timer that fired as the run ended, or after: no attempt comes of it
            step = run.step(step_id)
            if step.status in ("running", "succeeded", "skipped") or attempt < step.attempt.number or (
                    attempt == step.attempt.number and step.status != "scheduled"):
                return run   # a late timer for an attempt that has moved on (only a resume schedules one again)
            if (why := unschedulable(run, step)) is not None:
                return _set_aside(run, event, seq, why)
            was = readiness.mark(run, step)
            step.status, step.reason = "scheduled", reason
            step.attempt.number, step.attempt.scheduled_seq = attempt, seq
            step.retry.status = ""
            readiness.unpend(run, step_id)
            readiness.changed(run, step, was)
        case StepStarted(step_id=step_id, executor=executor, at=at):
            step = run.step(step_id)
            was = readiness.mark(run, step)
            step.status, step.attempt.executor, step.started_at, step.ran = "running", executor, at, True
            step.attempt.lease = event.lease
            readiness.changed(run, step, was)
        case StepSucceeded(step_id=step_id, outputs=outputs, duration_ms=duration, at=at, note=note):
            step = _finish(run, step_id, at)
            was = readiness.mark(run, step)
            step.status, step.attempt.outputs, step.attempt.duration_ms = "succeeded", outputs, duration
            step.attempt.error = step.attempt.category = ""
            step.attempt.note = note
            readiness.changed(run, step, was)
        case StepFailed(step_id=step_id, error=error, category=category, outputs=outputs,
                        duration_ms=duration, at=at):
            step = _finish(run, step_id, at)
            was = readiness.mark(run, step)
            # An interrupted attempt (its executor died) is not the step's failure:
            # the step goes back to pending and runs again as the next attempt.
            step.status = "pending" if category == "interrupted" else "failed"
            if category == "interrupted":
                readiness.pend(run, step)
            else:
                readiness.unpend(run, step_id)
                run.failures += 1
            attempt_state = step.attempt
            attempt_state.error, attempt_state.category = error, category
            attempt_state.outputs, attempt_state.duration_ms, attempt_state.note = outputs, duration, event.note
            step.retry.status = "deciding" if step.status == "failed" and _may_retry(run, step) else ""
            step.retry.remediation = ""
            readiness.changed(run, step, was)
        case StepSkipped(step_id=step_id, reason=reason, at=at):
            step = _finish(run, step_id, at)
            was = readiness.mark(run, step)
            step.status, step.reason = "skipped", reason
            readiness.unpend(run, step_id)
            readiness.changed(run, step, was)
        case RunStarted(at=at):
            playbook, plan = playbook_of(event)
            run.started, run.status, run.started_at = event, "running", at
            run.steps = {step.id: StepState(id=step.id) for step in playbook.steps}
            run.order = {step_id: i for i, step_id in enumerate(run.steps)}
            run.specs = {step.id: step for step in playbook.steps}
            readiness.begin(run, plan.needs)
        case RunPaused(actor=actor, reason=reason):
            run.status, run.steering = "paused", replace(run.steering, paused_by=actor, pause_reason=reason)
        case RunResumed(actor=actor):
            run.status = "rolling_back" if run.phase == "rollback" else "running"
            run.steering = replace(run.steering, paused_by=None, pause_reason="", resumed_by=actor)
        case RunCancelRequested(actor=actor, reason=reason, fails=fails):
            run.status = "cancelling"
            run.steering = replace(run.steering, cancel_requested_by=actor, cancel_reason=reason, cancel_fails=fails)
        case RunCancelled(at=at):
            run.status, run.finished_at = "cancelled", at
            _forward_over(run)
        case RunCompleted(at=at):
            run.status, run.finished_at = "completed", at
        case RunFailed(reason=reason, at=at):
            run.status, run.finished_at, run.failure = "failed", at, reason
            _forward_over(run)
        case RunRetried():
            _retried(run, event)
            run.reopened = seq or run.version
        case StepRetryScheduled(step_id=step_id, due=due):
            step = run.step(step_id)
            was = readiness.mark(run, step)
            step.retry.status, step.retry.due = "waiting", due
            readiness.changed(run, step, was)
        case StepRemediationStarted(step_id=step_id):
            run.step(step_id).retry.remediation = "running"
        case StepRemediated(step_id=step_id):
            run.step(step_id).retry.remediation = "done"
        case StepRemediationFailed(step_id=step_id):
            run.step(step_id).retry.remediation = "failed"
        case StepNotRetried(step_id=step_id, reason=reason):
            step = run.step(step_id)
            was = readiness.mark(run, step)
            step.retry.status, step.reason = "", reason
            readiness.changed(run, step, was)
        case ApprovalRequested(step_id=step_id, deadline=deadline, message=message):
            gate = run.step(step_id).gate
            gate.status, gate.deadline, gate.approvals, gate.deadline_passed = "requested", deadline, [], False
            gate.message = message
            run.gates_waiting += 1
        case ApprovalGiven(step_id=step_id):
            gate = run.step(step_id).gate
            gate.approvals = [*gate.approvals, event]
        case ApprovalGranted(step_id=step_id, approvers=approvers, actor=actor):
            gate = run.step(step_id).gate
            gate.status, gate.decided_by = "granted", approvers or [actor]
            run.gates_waiting -= 1
        case ApprovalRejected(step_id=step_id, actor=actor, comment=comment):
            gate = run.step(step_id).gate
            # The person it counts for, as a grant's approvers are (an admin may reject for someone).
            gate.status, gate.decided_by, gate.comment = "rejected", [event.on_behalf_of or actor], comment
            run.gates_waiting -= 1
        case ApprovalDeadlinePassed(step_id=step_id):
            run.step(step_id).gate.deadline_passed = True
        case ApprovalTimedOut(step_id=step_id):
            run.step(step_id).gate.status = "timed_out"
            run.gates_waiting -= 1
        case RollbackStarted(waves=waves, reason=reason, actor=actor, at=at):
            # Started before the run ended, it is `on_failure: rollback`'s, and its reason the run's failure;
            # after the end, someone asked for it: the failure, if any, stays as the run recorded it.
            after_failure = not run.finished
            if after_failure:
                run.failure = reason
                _forward_over(run)
            else:
                run.reopened = seq or run.version
            run.rollback = RollbackRequest(reason, actor, event.on_behalf_of, after_failure)
            run.phase, run.rollback_waves, run.finished_at = "rollback", waves, None
            run.status = "rolling_back" if run.status not in ("paused", "cancelling") else run.status
            for step_id in (s for wave in waves for s in wave):
                run.step(step_id).rollback.status = "pending"
        case StepRollbackScheduled(step_id=step_id, attempt=attempt):
            rollback = run.step(step_id).rollback
            rollback.status, rollback.attempt, rollback.scheduled_seq = "scheduled", attempt, seq
        case StepRollbackStarted(step_id=step_id, executor=executor):
            rollback = run.step(step_id).rollback
            rollback.status, rollback.executor, rollback.lease = "running", executor, event.lease
        case StepRolledBack(step_id=step_id, outputs=outputs):
            rollback = run.step(step_id).rollback
            rollback.status, rollback.outputs, rollback.error = "rolled_back", outputs, ""
        case StepRollbackFailed(step_id=step_id, error=error, category=category, outputs=outputs):
            rollback = run.step(step_id).rollback
            # As with steps, an interrupted rollback attempt is tried again.
            rollback.status = "pending" if category == "interrupted" else "failed"
            rollback.error, rollback.outputs = error, outputs
        case RollbackCompleted(at=at):
            run.status, run.finished_at = "rolled_back", at
        case RollbackFailed(reason=reason, at=at):
            run.status, run.finished_at = "rollback_failed", at
            if run.rollback is not None:    # fit.py: only after a RollbackStarted
                run.rollback = replace(run.rollback, failure=reason)
    return run


def variables_of(started: RunStarted) -> dict[str, Any]:
    """The run's variables: the playbook's, with what its environment gives them."""
    own = playbook_of(started)[0].variables
    return {**own, **started.variables} if started.variables else own


def _retried(run: Run, event: RunRetried) -> None:
    """The run goes on: its pins replaced where the retry changed them, the steps that run again reset."""
    started = run.started
    assert started is not None
    changes: dict[str, Any] = {}
    if event.parameters is not None:
        changes["parameters"] = event.parameters
    if event.playbook is not None and event.plan is not None:
        changes["playbook"], changes["plan"] = event.playbook, event.plan
        changes["variables"] = event.variables or {}
        if event.pin is not None:     # the run points at the text it follows now
            changes["pin"] = event.pin
        steps = run.steps
        run.steps = {step.id: steps.get(step.id) or StepState(id=step.id) for step in event.playbook.steps}
        run.specs = {step.id: step for step in event.playbook.steps}
        run.order = {step_id: i for i, step_id in enumerate(run.steps)}
    if changes:
        run.started = msgspec.structs.replace(started, **changes)
    run.retried_by = run.retried_by | {who for who in (event.actor, event.on_behalf_of) if who}   # replaced whole
    for step_id in event.steps:
        step = run.step(step_id)
        # A retry timer still armed would start the next attempt: that number is spent, the next is the run's.
        number = step.attempt.number + (1 if step.retry.status == "waiting" else 0)
        behalf = f" for {event.on_behalf_of}" if event.on_behalf_of else ""
        step.status, step.reason = "pending", f"runs again: retried by {event.actor}{behalf}"
        step.attempt, step.retry = AttemptState(number=number), RetryState(first=number + 1)
        step.gate, step.rollback = GateState(), RollbackState()
        step.started_at = step.finished_at = None   # finished_order stays: an attempt that ran is undone in its place
    run.status, run.phase, run.finished_at, run.failure, run.steering = "running", "forward", None, "", Steering()
    run.rollback = None
    run.rollback_waves = []
    readiness.recount(run, run.plan.needs)
    run.gates_waiting = sum(step.gate.status == "requested" for step in run.steps.values())


def _forward_over(run: Run) -> None:
    """The run goes no further forward: a step a retry left pending ("runs again") will not run after all, and a
    failure still waiting for its retry decision (a cancel came first) is not retried: it stands."""
    for step in run.steps.values():
        if step.status == "pending" and step.reason:
            run.step(step.id).reason = ""
        elif step.retry.status == "deciding":
            changing = run.step(step.id)
            was = readiness.mark(run, changing)
            changing.retry.status = ""
            readiness.changed(run, changing, was)


def _may_retry(run: Run, step: StepState) -> bool:
    """Whether the resilience service gets to decide on this failure (cancel never retries, nor does the engine's
    own failure: it failed every delivery already, and would again until the engine is fixed)."""
    policy = run.specs[step.id].retry
    return ((policy is not None or bool(run.error_handlers))
            and step.attempt.category not in ("cancelled", "interrupted", "engine")
            and run.status in ("running", "paused"))


def _finish(run: Run, step_id: str, at: datetime) -> StepState:
    step = run.step(step_id)
    run.finished_steps += 1
    step.finished_at, step.finished_order = at, run.finished_steps
    return step
