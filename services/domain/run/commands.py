"""What the services ask of the run decider, beside the public commands of `events.commands`.

These never travel: each service builds one from what it received (an event, a result,
a verdict) and hands it to `decide` with the time it received it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events.commands import CancelRun, PauseRun, ResumeRun, RollbackRun


@dataclass(frozen=True, slots=True)
class Advance:
    """Schedule whatever is ready (after a start, a resume, or a crash between appends)."""


@dataclass(frozen=True, slots=True)
class BeginStep:
    """An executor received `StepScheduled` (or `StepRollbackScheduled` when `rollback`),
    stored at stream sequence `scheduled_seq`, and wants to run it.

    `redelivered`: the message reached this executor although another may have started
    the attempt; as executors ack only when a step ends, that one has died.
    """

    step_id: str
    attempt: int
    scheduled_seq: int
    executor: str
    redelivered: bool
    rollback: bool = False


@dataclass(frozen=True, slots=True)
class FinishStep:
    """An executor finished an attempt: `error` empty means it succeeded."""

    step_id: str
    attempt: int
    outputs: Any
    duration_ms: float
    error: str = ""
    category: str = "unknown"
    rollback: bool = False


@dataclass(frozen=True, slots=True)
class DecideRetry:
    """The resilience service's verdict on a failed attempt (its randomness already drawn)."""

    step_id: str
    attempt: int
    retry: bool
    category: str
    reason: str
    pattern: str | None = None
    delay_seconds: float = 0.0
    exhausted: bool = False


@dataclass(frozen=True, slots=True)
class Decide:
    """A person's decision on a gate; `groups` come from the directory, at the edge."""

    step_id: str
    actor: str
    groups: tuple[str, ...]
    approve: bool
    comment: str = ""


@dataclass(frozen=True, slots=True)
class DeadlinePassed:
    step_id: str


RunCommand = (PauseRun | ResumeRun | CancelRun | RollbackRun | Advance | BeginStep | FinishStep
              | Decide | DeadlinePassed | DecideRetry)
