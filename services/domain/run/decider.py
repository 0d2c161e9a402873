"""The run decider: pure. decide(run, command, at) -> events; `evolve` folds them back.

No clock, no I/O, no randomness: what a decision needs arrives on the command, and
the time arrives beside it (`at`, the moment the service received the command). A
command that already took effect returns []; one that contradicts the state raises
`CommandRejected` with a sentence the user can act on. Every decision is followed by
`advance`, which schedules what became ready and ends the run when nothing is left.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import msgspec

from events.commands import CancelRun, PauseRun, ResumeRun, RollbackRun
from events.run import (
    RollbackFailed, RollbackStarted, RunCancelled, RunCancelRequested, RunCompleted, RunEvent, RunFailed,
    RunPaused, RunResumed, StepFailed, StepRollbackFailed, StepRollbackScheduled,
    StepNotRetried, StepRetryScheduled, StepRollbackStarted, StepRolledBack, StepScheduled, StepSkipped,
    StepStarted, StepSucceeded,
)
from services.domain.run import gates, retry_run, rollback
from services.domain.run.commands import (
    Advance, AnswerGate, BeginStep, ExpireGate, FinishStep, InterruptStep, RecordRetryVerdict, Retry, RunCommand,
)
from services.domain.run.dry_run import dry_run_events
from services.domain.run.readiness import tolerated, tolerated_or_continue
from services.domain.run.state import Run, StepState, ahead, evolve, variables_of
from services.errors import CommandRejected, PlaybookError, UnknownRun
from services.playbook.conditions import evaluate
from services.playbook.interpolate import Context
from services.playbook.references import find_references


def decide(run: Run, cmd: RunCommand, at: datetime, *, advancing: bool = True) -> list[RunEvent]:
    """The command's events, then (unless not `advancing`) what they make ready or end. An executor under its own
    NATS login records only its step's events, which are all it may write: the run service advances after them."""
    if not run.exists:
        raise UnknownRun(run.id)
    events = _events_for(run, cmd, at)
    if not advancing:
        return events
    with ahead(run) as next_run:
        for event in events:
            evolve(next_run, event)
        return events + advance(next_run, at)


def _events_for(run: Run, cmd: RunCommand, at: datetime) -> list[RunEvent]:
    match cmd:
        case PauseRun() if run.status == "paused":
            return []
        case PauseRun() if run.status not in ("running", "rolling_back"):
            raise CommandRejected(f"run {run.id} is {run.status}; only a running run can be paused",
                                  "illegal_transition")
        case PauseRun(reason=reason):
            return [RunPaused(run_id=run.id, at=at, actor=_actor(cmd), on_behalf_of=cmd.on_behalf_of, reason=reason)]

        case ResumeRun() if run.status in ("running", "rolling_back"):
            return []   # going already: of two people resuming at once, the second is told so, not refused
        case ResumeRun() if run.status != "paused":
            raise CommandRejected(f"run {run.id} is {run.status}; only a paused run can be resumed",
                                  "illegal_transition")
        case ResumeRun():
            return [RunResumed(run_id=run.id, at=at, actor=_actor(cmd), on_behalf_of=cmd.on_behalf_of),
                    *_schedule_again(run, at)]

        case CancelRun() if run.status in ("cancelling", "cancelled"):
            return []
        case CancelRun() if run.finished:
            raise CommandRejected(f"run {run.id} is already {run.status}; there is nothing to cancel",
                                  "illegal_transition")
        case CancelRun(reason=reason):
            return [RunCancelRequested(run_id=run.id, at=at, actor=_actor(cmd), on_behalf_of=cmd.on_behalf_of,
                                       reason=reason)]

        case RollbackRun() if run.status == "rolled_back":
            raise CommandRejected(f"run {run.id} is already rolled back", "illegal_transition")
        case RollbackRun() if run.status == "rolling_back":
            return []   # rolling back already
        case RollbackRun() if run.phase == "rollback" and run.status == "paused":
            raise CommandRejected(f"run {run.id} is paused in its rollback; resume it to go on rolling back",
                                  "illegal_transition")
        case RollbackRun() if run.phase == "rollback" and run.status == "cancelling":
            raise CommandRejected(f"run {run.id} is cancelling its rollback; roll it back again once it is cancelled",
                                  "illegal_transition")
        case RollbackRun() if not run.finished:
            raise CommandRejected(f"run {run.id} is {run.status}; cancel it or let it finish before rolling back",
                                  "illegal_transition")
        case RollbackRun(reason=reason):
            return [_rollback_started(run, at, reason, _actor(cmd), cmd.on_behalf_of)]

        case Retry():
            return retry_run.retry(run, cmd, at)
        case AnswerGate():
            return gates.answer(run, cmd, at)
        case ExpireGate():
            return gates.expire(run, cmd, at)
        case RecordRetryVerdict():
            return _record_retry_verdict(run, cmd, at)
        case Advance():
            return []
        case BeginStep():
            return _begin(run, cmd, at)
        case InterruptStep():
            return _interrupt(run, cmd, at)
        case FinishStep():
            return _finish(run, cmd, at)
    raise TypeError(f"not a run command: {cmd!r}")


def _actor(cmd: PauseRun | ResumeRun | CancelRun | RollbackRun) -> str:
    """Who steers: the verified principal the run service put on the command."""
    return cmd.actor or "anonymous"


def _schedule_again(run: Run, at: datetime) -> list[RunEvent]:
    """Work scheduled before a pause was not started: schedule it afresh on resume."""
    again: list[RunEvent] = [
        StepScheduled(run_id=run.id, at=at, step_id=s.id, attempt=s.attempt.number, reason="resumed")
        for s in run.steps.values() if s.status == "scheduled"]
    again += [StepRollbackScheduled(run_id=run.id, at=at, step_id=s.id, attempt=s.rollback.attempt)
              for s in run.steps.values() if s.rollback.status == "scheduled"]
    return again


def _begin(run: Run, cmd: BeginStep, at: datetime) -> list[RunEvent]:
    step = run.steps.get(cmd.step_id)
    if step is None:
        return []
    attempt, seq, state = ((step.rollback.attempt, step.rollback.scheduled_seq, step.rollback.status)
                           if cmd.rollback else (step.attempt.number, step.attempt.scheduled_seq, step.status))
    if attempt != cmd.attempt or seq != cmd.scheduled_seq:
        return []  # a stale schedule: a newer one exists, or the step moved on
    if state != "scheduled" or run.status != ("rolling_back" if cmd.rollback else "running"):
        return []  # started already (by this executor or another), or the run is paused or cancelling
    started = StepRollbackStarted if cmd.rollback else StepStarted
    return [started(run_id=run.id, at=at, step_id=step.id, attempt=attempt, executor=cmd.executor, lease=cmd.lease,
                    host=cmd.host, boot_id=cmd.boot_id, pid=cmd.pid, pid_started=cmd.pid_started)]


def _interrupt(run: Run, cmd: InterruptStep, at: datetime) -> list[RunEvent]:
    step = run.steps.get(cmd.step_id)
    if step is None:
        return []
    attempt, state = ((step.rollback.attempt, step.rollback.status) if cmd.rollback
                      else (step.attempt.number, step.status))
    if attempt != cmd.attempt:
        return []  # the step moved on
    if state == "scheduled" and run.status == ("rolling_back" if cmd.rollback else "running"):
        # Its holder went between claiming it and starting it: schedule it again, for whoever is there.
        if cmd.rollback:
            return [StepRollbackScheduled(run_id=run.id, at=at, step_id=step.id, attempt=attempt)]
        return [StepScheduled(run_id=run.id, at=at, step_id=step.id, attempt=attempt,
                              reason="its executor stopped before starting it")]
    if state != "running":
        return []  # it ended (or was interrupted) already
    failed = StepRollbackFailed if cmd.rollback else StepFailed
    return [failed(run_id=run.id, at=at, step_id=step.id, attempt=attempt, error=cmd.reason, category="interrupted")]


def _finish(run: Run, cmd: FinishStep, at: datetime) -> list[RunEvent]:
    step = run.steps.get(cmd.step_id)
    attempt, state = (step.rollback.attempt, step.rollback.status) if step and cmd.rollback else (
        (step.attempt.number, step.status) if step else (0, ""))
    if step is None or attempt != cmd.attempt or state != "running":
        return []  # already recorded (a retried append) or superseded
    common: dict[str, Any] = dict(run_id=run.id, at=at, step_id=step.id, attempt=attempt, outputs=cmd.outputs,
                                  duration_ms=cmd.duration_ms, note=cmd.note)
    succeeded, failed = (StepRolledBack, StepRollbackFailed) if cmd.rollback else (StepSucceeded, StepFailed)
    if not cmd.error:
        return [succeeded(**common)]
    return [failed(**common, error=cmd.error, category=cmd.category)]


def _record_retry_verdict(run: Run, cmd: RecordRetryVerdict, at: datetime) -> list[RunEvent]:
    step = run.steps.get(cmd.step_id)
    if step is None or step.retry.status != "deciding" or step.attempt.number != cmd.attempt:
        return []   # decided already (a redelivered StepFailed)
    common: dict[str, Any] = dict(run_id=run.id, at=at, step_id=step.id, category=cmd.category, reason=cmd.reason,
                                  pattern=cmd.pattern)
    if cmd.retry and run.status in ("running", "paused"):
        return [StepRetryScheduled(**common, attempt=step.attempt.number + 1, delay_seconds=cmd.delay_seconds,
                                   due=at + timedelta(seconds=cmd.delay_seconds))]
    return [StepNotRetried(**common, attempt=step.attempt.number, exhausted=cmd.exhausted)]


def advance(run: Run, at: datetime) -> list[RunEvent]:
    """Schedule or skip every step whose needs are met, then end the run if nothing is left.

    Works on `run` in place: callers pass a copy when they must keep the original.
    """
    if run.started.dry_run:  # type: ignore[union-attr]
        return [] if run.finished else dry_run_events(run, at)
    if run.phase == "rollback":
        return _advance_rollback(run, at)
    events: list[RunEvent] = []

    def emit(event: RunEvent) -> None:
        events.append(event)
        evolve(run, event)

    if run.status in ("running", "paused"):
        for event in gates.open_gates(run, at):
            emit(event)
    if run.status == "running" and not _stopped_by_failure(run):
        progressed = True
        while progressed:  # a skip can make further steps ready
            progressed = False
            for step in _ready(run):
                decision = _schedule_or_skip(run, step, at)
                emit(decision)
                progressed = progressed or isinstance(decision, (StepSkipped, StepFailed))
            if _stopped_by_failure(run):
                break

    if run.running or run.finished or run.status == "paused":
        return events
    if run.status == "running" and run.retrying:
        return events   # a failure still waits for its retry decision or its retry
    if run.status == "cancelling":
        emit(given_up(run, at, run.steering.cancel_reason) if run.steering.cancel_fails
             else RunCancelled(run_id=run.id, at=at))
    elif run.status == "running":
        duration = (at - run.started_at).total_seconds() * 1000 if run.started_at else 0.0
        failed = [s.id for s in run.steps.values() if s.status == "failed" and not s.retry.status
                  and not tolerated(run, s.id)] if run.failures else []    # no step ever failed: nothing to scan
        if failed and (_stopped_by_failure(run) or _all_settled(run)):
            reason = _failure_reason(run, failed)
            if run.on_failure == "rollback" and rollback.rollback_waves(run):
                emit(_rollback_started(run, at, reason, "system"))
                events += _advance_rollback(run, at)
            else:
                emit(RunFailed(run_id=run.id, at=at, reason=reason, failed_steps=failed, duration_ms=duration))
        elif _all_settled(run):
            emit(RunCompleted(run_id=run.id, at=at, duration_ms=duration))
    return events


def given_up(run: Run, at: datetime, reason: str) -> RunFailed | RollbackFailed:
    """How a run the engine gave up on ends once nothing of it runs (`RunCancelRequested.fails`): failed, with
    why, or its rollback failed."""
    if run.phase == "rollback":
        return RollbackFailed(run_id=run.id, at=at, reason=reason,
                              failed_steps=[s.id for s in run.steps.values() if s.rollback.status == "failed"])
    duration = (at - run.started_at).total_seconds() * 1000 if run.started_at else 0.0
    return RunFailed(run_id=run.id, at=at, reason=reason, duration_ms=duration,
                     failed_steps=[s.id for s in run.steps.values() if s.status == "failed"])


def _advance_rollback(run: Run, at: datetime) -> list[RunEvent]:
    if run.finished or run.status == "paused":
        return []
    if run.status == "cancelling":
        busy = any(s.rollback.status == "running" for s in run.steps.values())
        ending = (given_up(run, at, run.steering.cancel_reason) if run.steering.cancel_fails
                  else RunCancelled(run_id=run.id, at=at))
        return [] if busy else [ending]
    events = rollback.next_rollback_events(run, at)
    for event in events:
        evolve(run, event)
    return events


def _rollback_started(run: Run, at: datetime, reason: str, actor: str,
                      on_behalf_of: str | None = None) -> RollbackStarted:
    # Roll back again only what is not rolled back yet: a rollback that failed, or was cancelled half-way,
    # leaves steps undone already, whose actions must not run twice.
    waves = [[s for s in wave if run.steps[s].rollback.status != "rolled_back"]
             for wave in rollback.rollback_waves(run)]
    waves = [wave for wave in waves if wave]
    return RollbackStarted(run_id=run.id, at=at, waves=waves, reason=reason, actor=actor, on_behalf_of=on_behalf_of)


def _ready(run: Run) -> list[StepState]:
    """Pending steps whose needs are settled, in playbook order, but for those waiting at their gate."""
    steps = run.steps
    return [s for s in (steps[i] for i in sorted(run.ready, key=run.order.__getitem__)) if s.gate.status != "requested"]


def _schedule_or_skip(run: Run, step: StepState, at: datetime) -> RunEvent:
    if step.gate.status in ("rejected", "timed_out"):   # decided against: its StepFailed was not stored
        return gates.failure_of(run, step, at)
    spec = run.specs[step.id]
    attempt = step.attempt.number + 1
    if spec.when is not None:
        try:
            go = evaluate(spec.when, context_of(run))
        except PlaybookError as err:
            if skipped := _skipped_step_read(run, spec.when):
                return StepSkipped(run_id=run.id, at=at, step_id=step.id,
                                   reason=f"`when` reads the outputs of step {skipped}, which was skipped")
            return StepFailed(run_id=run.id, at=at, step_id=step.id, attempt=attempt,
                              error=f"cannot evaluate `when`: {err}", category="configuration")
        if not go:
            return StepSkipped(run_id=run.id, at=at, step_id=step.id, reason="`when` condition is false")
    if run.gate_of(step.id) is not None and step.gate.status != "granted":
        return gates.request(run, step, context_of(run), at)
    reason = "previous attempt interrupted" if step.attempt.category == "interrupted" else ""
    return StepScheduled(run_id=run.id, at=at, step_id=step.id, attempt=attempt, reason=reason)


def _skipped_step_read(run: Run, when: Any) -> str | None:
    """A skipped step whose outputs the `when` reads: a step that needs what it would have made is skipped too."""
    todo = [msgspec.to_builtins(when)]
    while todo:
        value = todo.pop()
        if isinstance(value, str) and "${" in value:
            for ref in find_references(value):
                if ref.step_id is not None and (other := run.steps.get(ref.step_id)) and other.status == "skipped":
                    return ref.step_id
        elif isinstance(value, (list, dict)):
            todo += value.values() if isinstance(value, dict) else value
    return None


def context_of(run: Run) -> Context:
    """What `${...}` can see in this run: parameters, variables, outputs of finished steps."""
    started = run.started
    assert started is not None
    return Context(parameters=started.parameters, variables=variables_of(started), steps=FinishedOutputs(run.steps))


class FinishedOutputs(Mapping[str, Mapping[str, Any]]):
    """The outputs of the run's finished steps, a failed one's too (a step after it may run when the failure
    is tolerated, and read its exit code), looked up when a reference asks: a step of a run of 10,000 steps
    does not copy the other 9,999 to resolve its arguments."""

    __slots__ = ("_steps",)

    def __init__(self, steps: Mapping[str, StepState]) -> None:
        self._steps = steps

    def __getitem__(self, step_id: str) -> Mapping[str, Any]:
        step = self._steps[step_id]
        if step.status not in _FINISHED:
            raise KeyError(step_id)
        return step.attempt.outputs

    def __iter__(self) -> Iterator[str]:
        return (step_id for step_id, step in self._steps.items() if step.status in _FINISHED)

    def __len__(self) -> int:
        return sum(1 for _ in self)


_FINISHED = frozenset({"succeeded", "failed"})


def _stopped_by_failure(run: Run) -> bool:
    if not run.failures:
        return False     # no step ever failed: nothing to scan for
    return any(s.status == "failed" and not s.retry.status and not tolerated_or_continue(run, s.id)
               for s in run.steps.values())


def _all_settled(run: Run) -> bool:
    return not run.unsettled


def _failure_reason(run: Run, failed: list[str]) -> str:
    first = run.steps[failed[0]]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"step {first.id} failed: {first.attempt.error}{more}"
