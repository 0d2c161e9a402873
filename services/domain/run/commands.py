"""What the services ask of the run decider, beside the public commands of `events.commands`.

These never travel: each service builds one from what it received (an event, a result,
a verdict) and hands it to `decide` with the time it received it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from events.catalog import PlaybookPin
from events.commands import CancelRun, PauseRun, ResumeRun, RetryRun, RollbackRun
from events.run import ErrorCategory

if TYPE_CHECKING:   # a type only: readers of runs (the CLI's `status`) do not load the checks behind it
    from services.playbook import LoadedPlaybook


@dataclass(frozen=True, slots=True)
class Advance:
    """Schedule whatever is ready (after a start, a resume, or a crash between appends)."""


@dataclass(frozen=True, slots=True)
class BeginStep:
    """An executor received `StepScheduled` (or `StepRollbackScheduled` when `rollback`),
    stored at stream sequence `scheduled_seq`, holds its lease, and wants to run it.

    The rest says where it runs, for StepStarted: its lease's sequence, host, boot, pid and
    the pid's start time.
    """

    step_id: str
    attempt: int
    scheduled_seq: int
    executor: str
    rollback: bool = False
    lease: int = 0
    host: str = ""
    boot_id: str = ""
    pid: int = 0
    pid_started: int = 0


@dataclass(frozen=True, slots=True)
class InterruptStep:
    """The attempt's executor is gone or gave it up: its lease lapsed and was taken over, or it stopped.
    A running attempt is recorded interrupted (`reason` says how) and the step runs again; one its
    executor claimed but had not started is scheduled again."""

    step_id: str
    attempt: int
    reason: str
    rollback: bool = False


@dataclass(frozen=True, slots=True)
class FinishStep:
    """An executor finished an attempt: `error` empty means it succeeded."""

    step_id: str
    attempt: int
    outputs: Any
    duration_ms: float
    error: str = ""
    category: ErrorCategory = "unknown"
    rollback: bool = False
    note: str = ""              # what was cut from the outcome to fit the event store


@dataclass(frozen=True, slots=True)
class RecordRetryVerdict:
    """The resilience service's verdict on a failed attempt: retry (after `delay_seconds`) or not.

    Its randomness (jitter) was drawn before, so recording it stays pure.
    """

    step_id: str
    attempt: int
    retry: bool
    category: ErrorCategory
    reason: str
    pattern: str | None = None
    delay_seconds: float = 0.0
    exhausted: bool = False


@dataclass(frozen=True, slots=True)
class AnswerGate:
    """A person approves (`approve`) or rejects a gate.

    `actor` is the verified principal; `on_behalf_of` the person an admin acts for, whom
    the gate counts; `groups` are the counted person's, from the directory, at the edge.
    """

    step_id: str
    actor: str
    groups: tuple[str, ...]
    approve: bool
    comment: str = ""
    on_behalf_of: str | None = None

    @property
    def person(self) -> str:
        """Who the gate counts."""
        return self.on_behalf_of or self.actor


@dataclass(frozen=True, slots=True)
class ExpireGate:
    """The gate's deadline timer fired."""

    step_id: str


@dataclass(frozen=True, slots=True)
class Retry:
    """`RetryRun` as the decider takes it: its replacement playbook, if it gave one, already
    validated like a start (by the service, in a worker thread; `source` says where it came from), and where
    the service stored it (its pin: the catalog's version and digest, or the digest of the text sent)."""

    asked: RetryRun
    replacement: LoadedPlaybook | None = None
    pin: PlaybookPin | None = None


RunCommand = (PauseRun | ResumeRun | CancelRun | RollbackRun | Advance | BeginStep | InterruptStep | FinishStep
              | AnswerGate | ExpireGate | RecordRetryVerdict | Retry)
