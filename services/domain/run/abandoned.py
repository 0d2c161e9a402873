"""What follows a message a service gave up on (`MessageAbandoned`), pure: the run never waits for it for ever.

The safety net under every service that drives runs. It reads the run as folded and the record
alone, not the code that failed:

- the executor gave up on a `StepScheduled` (the attempt never started): the step fails as an
  `engine` error, and the run's failure policy applies (decided by `advance`, as after any failure);
- the executor gave up on a `StepRollbackScheduled`: that rollback action fails as `engine`;
- the executor gave up recording how a started attempt ended (its record names the `StepStarted`, or
  `StepRollbackStarted`): the step (or rollback action) fails as `engine` the same way;
- the resilience service gave up on a `StepFailed` (its retry never decided, or never armed): the
  failure stands (`StepNotRetried`), and the failure policy applies;
- anything else of those services (the advancer's decision after a start, a resume, an answer;
  the approval service's timer; a message no one could read): the run is cancelled as a person
  cancels it (its running attempts are killed), but ends failed, with why (`RunCancelRequested.fails`);
  at once when nothing of it runs. If `advance` itself fails after a step's failure, this too.

An engine error is not retried: the message failed every delivery, with backoff, already, and would
again until the engine is fixed; `playbook retry` runs the step again then. Every reaction is decided
on the run as it is and is [] once it took effect, so a redelivered record or a second replica
changes nothing, nor does the record of a run that ended, or of a message older than the run's last
reopening (a retry, a rollback asked after its end), or of another service (learning, this net).
"""
from __future__ import annotations

from datetime import datetime

from events.run import (
    MessageAbandoned, RunCancelled, RunCancelRequested, RunEvent, StepFailed, StepNotRetried, StepRollbackFailed,
)
from services.domain.run.decider import advance, given_up
from services.domain.run.state import Run, ahead, evolve

DRIVING = frozenset({"advancer", "executor", "approval", "resilience"})   # consumers whose messages move runs on
SYSTEM = "system"


def react(run: Run, abandoned: MessageAbandoned, at: datetime) -> list[RunEvent]:
    if not run.exists or run.finished or abandoned.consumer not in DRIVING or abandoned.seq < run.reopened:
        return []   # ended, not a driving service's, or of the run before it was retried or rolled back by hand
    kind = abandoned.subject.rsplit(".", 1)[-1]
    reaction = _STEP_REACTIONS.get((abandoned.consumer, kind)) if abandoned.step_id is not None else None
    if reaction is None:
        return _end(run, abandoned, at)
    failed = reaction(run, abandoned, at)       # [] once it took effect: the advance may still be missing
    try:
        with ahead(run) as next_run:
            for event in failed:
                evolve(next_run, event)
            return failed + advance(next_run, at)
    except Exception:  # noqa: BLE001 - the decider is broken for this run too: end it without it
        with ahead(run) as next_run:
            for event in failed:
                evolve(next_run, event)
            return failed + _end(next_run, abandoned, at)


def reason_of(abandoned: MessageAbandoned) -> str:
    what = abandoned.subject.rsplit(".", 1)[-1]
    return (f"the engine gave up on {what} (message {abandoned.seq}): {abandoned.consumer} failed on it "
            f"{abandoned.deliveries} time{'' if abandoned.deliveries == 1 else 's'}: {abandoned.error}")


def _start_failed(run: Run, abandoned: MessageAbandoned, at: datetime) -> list[RunEvent]:
    step = run.steps.get(abandoned.step_id or "")
    if (step is None or step.status != "scheduled" or step.attempt.number != abandoned.attempt
            or step.attempt.scheduled_seq != abandoned.seq or run.status not in ("running", "paused")):
        return []
    return [StepFailed(run_id=run.id, at=at, step_id=step.id, attempt=step.attempt.number, category="engine",
                       error=reason_of(abandoned))]


def _rollback_start_failed(run: Run, abandoned: MessageAbandoned, at: datetime) -> list[RunEvent]:
    step = run.steps.get(abandoned.step_id or "")
    if (step is None or step.rollback.status != "scheduled" or step.rollback.attempt != abandoned.attempt
            or step.rollback.scheduled_seq != abandoned.seq or run.status != "rolling_back"):
        return []
    return [StepRollbackFailed(run_id=run.id, at=at, step_id=step.id, attempt=step.rollback.attempt,
                               category="engine", error=reason_of(abandoned))]


def _outcome_lost(run: Run, abandoned: MessageAbandoned, at: datetime) -> list[RunEvent]:
    """The attempt ran, and its executor could not record how it ended (it gave that up, and the lease): whatever
    it did, the step fails as `engine` (a retry runs it again)."""
    step = run.steps.get(abandoned.step_id or "")
    if step is None or step.status != "running" or step.attempt.number != abandoned.attempt:
        return []
    return [StepFailed(run_id=run.id, at=at, step_id=step.id, attempt=step.attempt.number, category="engine",
                       error=reason_of(abandoned))]


def _rollback_outcome_lost(run: Run, abandoned: MessageAbandoned, at: datetime) -> list[RunEvent]:
    step = run.steps.get(abandoned.step_id or "")
    if step is None or step.rollback.status != "running" or step.rollback.attempt != abandoned.attempt:
        return []
    return [StepRollbackFailed(run_id=run.id, at=at, step_id=step.id, attempt=step.rollback.attempt,
                               category="engine", error=reason_of(abandoned))]


def _verdict_failed(run: Run, abandoned: MessageAbandoned, at: datetime) -> list[RunEvent]:
    step = run.steps.get(abandoned.step_id or "")
    if step is None or step.status != "failed" or step.attempt.number != abandoned.attempt or not step.retry.status:
        return []
    return [StepNotRetried(run_id=run.id, at=at, step_id=step.id, attempt=step.attempt.number,
                           category="engine", reason=reason_of(abandoned))]


_STEP_REACTIONS = {
    ("executor", "StepScheduled"): _start_failed,
    ("executor", "StepRollbackScheduled"): _rollback_start_failed,
    ("executor", "StepStarted"): _outcome_lost,         # recorded by the executor itself (services/executor)
    ("executor", "StepRollbackStarted"): _rollback_outcome_lost,
    ("resilience", "StepFailed"): _verdict_failed,
}


def _end(run: Run, abandoned: MessageAbandoned, at: datetime) -> list[RunEvent]:
    """Cancel it as a person would, to end failed; at once when nothing of it runs. A cancel asked already
    ends as it was asked, once nothing runs: the decision after it may be what was given up on."""
    if run.status == "cancelling":
        return [] if _busy(run) else [_ending(run, at)]   # else the attempts being killed end it
    reason = reason_of(abandoned)
    cancel = RunCancelRequested(run_id=run.id, at=at, actor=SYSTEM, reason=reason, fails=True)
    return [cancel] if _busy(run) else [cancel, given_up(run, at, reason)]


def _ending(run: Run, at: datetime) -> RunEvent:
    return given_up(run, at, run.steering.cancel_reason) if run.steering.cancel_fails else RunCancelled(
        run_id=run.id, at=at)


def _busy(run: Run) -> bool:
    """Something of it runs: an executor kills it and records its end, which ends the run."""
    if run.phase == "rollback":
        return any(s.rollback.status == "running" for s in run.steps.values())
    return run.running > 0
