"""Events in the words of the domain: one short sentence each, for timelines, the CLI and
the dashboard alike."""
from __future__ import annotations

from events.circuit import (
    CircuitCallFailed, CircuitCallSucceeded, CircuitClosed, CircuitEvent, CircuitHalfOpened, CircuitOpened,
    CircuitReset, CircuitTrialStarted,
)
from events.run import (
    ApprovalAttemptRefused, ApprovalDeadlinePassed, ApprovalGiven, ApprovalGranted, ApprovalRejected,
    ApprovalRequested, ApprovalTimedOut, MessageAbandoned, RollbackCompleted, RollbackFailed, RollbackStarted,
    RunCancelled, RunCancelRequested, RunCompleted, RunEvent, RunFailed, RunPaused, RunResumed, RunRetried,
    RunStarted, StepFailed,
    StepNotRetried, StepRemediated, StepRemediationFailed, StepRemediationStarted, StepRetryScheduled,
    StepRollbackFailed, StepRollbackScheduled, StepRollbackStarted, StepRolledBack, StepScheduled, StepSkipped,
    StepStarted, StepSucceeded, Unreadable,
)


# How a timeline colours each kind of event: bad news, a wait, good news, or what a person did.
TONES: dict[str, tuple[type[RunEvent], ...]] = {
    "bad": (StepFailed, RunFailed, StepRollbackFailed, RollbackFailed, ApprovalRejected, ApprovalAttemptRefused,
            ApprovalTimedOut, StepRemediationFailed, RunCancelled, MessageAbandoned),
    "wait": (StepRetryScheduled, StepNotRetried, ApprovalRequested, StepRemediationStarted),
    "good": (StepSucceeded, RunCompleted, ApprovalGranted, StepRolledBack, RollbackCompleted, StepRemediated),
    "person": (RunPaused, RunResumed, RunCancelRequested, ApprovalGiven, RollbackStarted, RunRetried),
}


def sentence(event: RunEvent) -> str | None:
    """A short sentence saying what happened, or None for an event not worth a line."""
    match event:
        case RunStarted():
            where = f" in {event.environment}" if event.environment else ""
            dry = " (dry run)" if event.dry_run else ""
            policy = f", on failure: {event.on_failure}" if event.on_failure else ""
            approvals = ", every step waits for an approval" if event.approval_required else ""
            return f"started playbook {event.playbook_name}{where}{dry}{policy}{approvals}"
        case StepScheduled():
            why = f" ({event.reason})" if event.reason else ""
            return f"attempt {event.attempt} waiting for an executor{why}"
        case StepStarted():
            return f"attempt {event.attempt} started on {event.executor}"
        case StepSucceeded():
            return f"succeeded in {_duration(event.duration_ms)}" + _noted(event.note)
        case StepFailed(category="interrupted"):
            return f"interrupted: {event.error}; it runs again"
        case StepFailed(category="engine"):
            return f"failed (engine, not retried): {event.error}"
        case StepFailed():
            return f"failed ({event.category}) after {_duration(event.duration_ms)}: {event.error}" + _noted(event.note)
        case StepSkipped():
            return f"skipped: {event.reason}"
        case StepRetryScheduled():
            return f"retry {event.attempt} in {event.delay_seconds:.1f} s after {event.category} error"
        case StepNotRetried():
            return f"not retried after {event.category} error: {event.reason}"
        case StepRemediationStarted():
            return f"remediation by error handler {event.handler + 1}: {event.reason}"
        case StepRemediated():
            return f"remediated by error handler {event.handler + 1}" + _noted(event.note)
        case StepRemediationFailed():
            return f"remediation by error handler {event.handler + 1} failed: {event.error}"
        case ApprovalRequested():
            who = ", ".join(event.required_approvers) or "anyone"
            count = f" ({event.min_approvals} approvals)" if event.min_approvals > 1 else ""
            until = f" until {event.deadline.isoformat()}" if event.deadline else ""
            return f"waiting for approval by {who}{count}{until}"
        case ApprovalGiven():
            return f"approved by {by(event)}" + (f": {event.comment}" if event.comment else "")
        case ApprovalGranted(by_timeout=True):
            return "approved automatically when the approval window closed"
        case ApprovalGranted():
            return f"gate opened, approved by {', '.join(event.approvers) or event.actor}"
        case ApprovalRejected():
            return f"rejected by {by(event)}" + (f": {event.comment}" if event.comment else "")
        case ApprovalTimedOut():
            return "approval timed out"
        case ApprovalAttemptRefused():
            return f"{by(event)} tried to {event.decision}, refused: {event.reason}"
        case ApprovalDeadlinePassed():
            return None
        case RunPaused():
            return f"paused by {by(event)}" + (f": {event.reason}" if event.reason else "")
        case RunResumed():
            return f"resumed by {by(event)}"
        case RunCancelRequested(fails=True):
            return f"stopped by the engine, to end failed: {event.reason}"
        case RunCancelRequested():
            return f"cancel requested by {by(event)}" + (f": {event.reason}" if event.reason else "")
        case RunCancelled():
            return "run cancelled"
        case RunCompleted():
            return f"run completed in {_duration(event.duration_ms)}"
        case RunFailed():
            return f"run failed after {_duration(event.duration_ms)}: {event.reason}"
        case RunRetried():
            return f"retried by {by(event)}: {retry_detail(event)}"
        case RollbackStarted():
            order = " then ".join("+".join(wave) for wave in event.waves) or "nothing to undo"
            return f"rollback by {by(event)}: {order}" + (f" ({event.reason})" if event.reason else "")
        case StepRollbackScheduled():
            return f"rollback attempt {event.attempt} waiting for an executor"
        case StepRollbackStarted():
            return f"rollback attempt {event.attempt} started on {event.executor}"
        case StepRolledBack():
            return f"rolled back in {_duration(event.duration_ms)}" + _noted(event.note)
        case StepRollbackFailed():
            return f"rollback failed ({event.category}): {event.error}" + _noted(event.note)
        case RollbackCompleted():
            return "rollback completed"
        case RollbackFailed():
            return f"rollback failed: {event.reason}"
        case MessageAbandoned():
            return abandoned_sentence(event)
        case Unreadable():
            return f"this version of the engine cannot read it, not applied: {event.error}"
    return type(event).__name__


def abandoned_sentence(event: MessageAbandoned) -> str:
    what = event.subject.rsplit(".", 1)[-1]
    return (f"{event.consumer} gave up on message {event.seq} ({what}) after {event.deliveries} "
            f"deliver{'y' if event.deliveries == 1 else 'ies'}: {event.error}")


def retry_detail(event: RunRetried) -> str:
    """What a retry runs again and what it changed: `c, d run again from c; corrected replicas=3; ...`."""
    where = f" from {event.from_step}" if event.from_step else ""
    parts = [(", ".join(event.steps) or "no step") + " run again" + where]
    if event.corrected:
        values = event.parameters or {}
        parts.append("corrected " + ", ".join(f"{name}={values.get(name)!r}" if name in values else name
                                              for name in event.corrected))
    version = event.pin.version if event.pin is not None else event.playbook.version if event.playbook else None
    if version is not None:      # stored, a pinned replacement carries its pin alone
        parts.append(f"playbook replaced ({event.source or 'given'}, version {version})")
    if event.reason:
        parts.append(event.reason)
    return "; ".join(parts)


def circuit_sentence(event: CircuitEvent) -> str:
    """One line for a breaker's event: which call, which transition and why."""
    match event:
        case CircuitCallFailed():
            return f"call by {event.run_id}/{event.step_id} failed: {event.error}"
        case CircuitCallSucceeded():
            return f"call by {event.run_id}/{event.step_id} succeeded"
        case CircuitOpened():
            return f"OPENED until {event.until:%H:%M:%S}Z: {event.reason}"
        case CircuitHalfOpened(trial_lost=lost) if lost:
            return f"HALF-OPEN again: the trial call by {lost} ended with no outcome; trial calls may test the target"
        case CircuitHalfOpened():
            return "HALF-OPEN: the open time passed; trial calls may test the target"
        case CircuitTrialStarted():
            return f"trial call by {event.run_id}/{event.step_id}"
        case CircuitClosed():
            return f"CLOSED: {event.reason}"
        case CircuitReset():
            return f"RESET by hand by {by(event)}"
    return type(event).__name__


def _noted(note: str) -> str:
    return f" ({note})" if note else ""


def by(event: RunEvent | CircuitEvent) -> str:
    """Who acted: the verified actor, and the person an admin acted for."""
    actor: str = getattr(event, "actor", "system")
    behalf = getattr(event, "on_behalf_of", None)
    return f"{actor} for {behalf}" if behalf else actor


def _duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"
