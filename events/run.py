"""Run events: the append-only history of one run, stored on `pb.run.<run_id>.<Type>`.

The class name is the msgspec tag, the last token of the subject and the name shown in
every interface. Events are past tense and never change meaning once published. An
event someone caused names the verified principal as `actor`, and `on_behalf_of` the
person an admin acted for (gates count that person).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from events.catalog import PlaybookPin
from events.playbook import ErrorHandler, FailurePolicy, Plan, Playbook

# Why a step attempt failed, as the resilience service classifies it. `cancelled` and
# `interrupted` are the engine's own: the run was cancelled, or the executor running the
# attempt died, stopped or lost its lease (the step runs again as the next attempt).
ErrorCategory = Literal[
    "network", "timeout", "authentication", "authorization", "validation", "resource",
    "dependency", "configuration", "temporary", "permanent", "unknown",
    "cancelled", "interrupted", "engine",
]


class RunEvent(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    run_id: str
    at: datetime


class RunStarted(RunEvent, frozen=True):
    """A run began; it pins the exact playbook (by digest), its plan and resolved parameters.

    Stored, it carries the `pin` and no `playbook` or `plan`: readers resolve them by the pin's
    digests before folding. Runs recorded before playbooks were stored by reference carry
    `playbook` and `plan` themselves and no pin.
    """

    actor: str
    playbook: Playbook | None = None
    plan: Plan | None = None
    pin: PlaybookPin | None = None
    on_behalf_of: str | None = None   # the person an admin acted for; `actor` is the admin
    parameters: dict[str, Any] = {}
    environment: str | None = None
    # What the environment gives to variables: its own, and the playbook's it sets otherwise.
    variables: dict[str, Any] = {}
    source: str = ""
    dry_run: bool = False
    allow_unsafe_shell: bool = False
    # The engine configuration's error handlers when the run began, after the playbook's own.
    engine_error_handlers: list[ErrorHandler] = []
    # Chosen by whoever started the run over the playbook's `on_failure`; None: the playbook's.
    on_failure: FailurePolicy | None = None
    # Asked by whoever started the run: every step waits for an approval (`Run.gate_of`).
    approval_required: bool = False

    @property
    def playbook_name(self) -> str:
        """The playbook's name, whether the playbook is resolved or only pinned."""
        if self.pin is not None:
            return self.pin.name
        return self.playbook.name if self.playbook is not None else ""

    @property
    def step_count(self) -> int:
        if self.pin is not None:
            return self.pin.steps
        return len(self.playbook.steps) if self.playbook is not None else 0

    @property
    def resolved(self) -> bool:
        """Whether the playbook and plan are here to fold (stored embedded, or resolved by a reader)."""
        return self.playbook is not None and self.plan is not None

    def as_stored(self) -> RunStarted:
        """What goes into the stream: a pinned run without its (resolved) playbook and plan."""
        if self.pin is None or self.playbook is None:
            return self
        return msgspec.structs.replace(self, playbook=None, plan=None)


class StepScheduled(RunEvent, frozen=True):
    """The step is ready and waits for an executor; executors consume these."""

    step_id: str
    attempt: int
    reason: str = ""


class StepStarted(RunEvent, frozen=True):
    """An executor took the attempt. Written before any side effect of the step, once the executor holds
    the attempt's lease (`lease`: its sequence in PB_LEASES, the attempt's fencing token; 0 before leases).
    Where the executor runs (host, boot, pid and the pid's start time) lets a successor on that machine
    find what the attempt left running."""

    step_id: str
    attempt: int
    executor: str
    lease: int = 0
    host: str = ""
    boot_id: str = ""
    pid: int = 0
    pid_started: int = 0          # clock ticks after boot (/proc/<pid>/stat, field 22)


class StepSucceeded(RunEvent, frozen=True):
    step_id: str
    attempt: int
    outputs: dict[str, Any] = {}
    duration_ms: float = 0.0
    note: str = ""                # what was cut from the outcome so it could be stored


class StepFailed(RunEvent, frozen=True):
    step_id: str
    attempt: int
    error: str
    category: ErrorCategory = "unknown"
    outputs: dict[str, Any] = {}
    duration_ms: float = 0.0
    note: str = ""


class StepSkipped(RunEvent, frozen=True):
    """The step's `when` was false (or it was not reached); skipped is never failed."""

    step_id: str
    reason: str


class RunPaused(RunEvent, frozen=True):
    actor: str
    on_behalf_of: str | None = None
    reason: str = ""


class RunResumed(RunEvent, frozen=True):
    actor: str
    on_behalf_of: str | None = None


class RunCancelRequested(RunEvent, frozen=True):
    """Cancel was asked for; executors kill the run's in-flight work on seeing it. `fails`: the engine asked it,
    having given up on one of the run's messages (`MessageAbandoned`): the run then ends failed (its rollback
    failed, in a rollback), with `reason`, not cancelled."""

    actor: str
    on_behalf_of: str | None = None
    reason: str = ""
    fails: bool = False


class RunCancelled(RunEvent, frozen=True):
    pass


class RunCompleted(RunEvent, frozen=True):
    duration_ms: float = 0.0


class RunFailed(RunEvent, frozen=True):
    reason: str
    failed_steps: list[str] = []
    duration_ms: float = 0.0


class RunRetried(RunEvent, frozen=True):
    """A failed or cancelled run goes on in place: `steps` run again as new attempts; every
    other step keeps its outcome and outputs. The run ends again with one new terminal event.

    `parameters` are the run's values from now on when they changed (`corrected` names the
    ones the caller gave); `playbook`, `plan` and the environment's `variables` replace the
    pinned ones when a replacement was given (`source` says where it came from, `pin` which
    text it is), checked against the steps that ran. Stored, a pinned replacement carries its
    `pin` and no `playbook` or `plan`: readers resolve them as a start's.
    """

    actor: str
    steps: list[str]
    on_behalf_of: str | None = None   # the person an admin acted for; `actor` is the admin
    from_step: str | None = None
    reason: str = ""
    corrected: list[str] = []
    parameters: dict[str, Any] | None = None
    playbook: Playbook | None = None
    plan: Plan | None = None
    variables: dict[str, Any] | None = None
    source: str = ""
    pin: PlaybookPin | None = None    # the replacement's: its catalog version and digest, or its text's digest

    @property
    def resolved(self) -> bool:
        """Whether a pinned replacement is here to fold (stored embedded, or resolved by a reader)."""
        return self.pin is None or (self.playbook is not None and self.plan is not None)

    def as_stored(self) -> RunRetried:
        """What goes into the stream: a pinned replacement without its (resolved) playbook and plan, as a start."""
        if self.pin is None or self.playbook is None:
            return self
        return msgspec.structs.replace(self, playbook=None, plan=None)


# -- retries (decided by the resilience service) -------------------------------------------

class StepRetryScheduled(RunEvent, frozen=True):
    """The failed attempt will be tried again: `attempt` starts at `due` (a durable timer)."""

    step_id: str
    attempt: int
    delay_seconds: float
    due: datetime
    category: ErrorCategory
    reason: str
    pattern: str | None = None


class StepNotRetried(RunEvent, frozen=True):
    """The failure stands: not retryable, or attempts exhausted. The failure policy applies."""

    step_id: str
    attempt: int
    category: ErrorCategory
    reason: str
    exhausted: bool = False
    pattern: str | None = None


class StepRemediationStarted(RunEvent, frozen=True):
    """An error handler's remediation runs before the failed step is retried (written first)."""

    step_id: str
    attempt: int
    handler: int
    reason: str


class StepRemediated(RunEvent, frozen=True):
    step_id: str
    attempt: int
    handler: int
    outputs: dict[str, Any] = {}
    note: str = ""


class StepRemediationFailed(RunEvent, frozen=True):
    step_id: str
    attempt: int
    handler: int
    error: str


# -- approval gates -----------------------------------------------------------------------

class ApprovalRequested(RunEvent, frozen=True):
    """A gated step is ready and waits for people; nothing runs until the gate opens."""

    step_id: str
    message: str
    required_approvers: list[str]
    min_approvals: int            # how many entries must be satisfied, each by a distinct person (no entries: people)
    deadline: datetime | None = None
    auto_approve_after_timeout: bool = False


class ApprovalGiven(RunEvent, frozen=True):
    """One person approved; the gate opens once enough distinct people have."""

    step_id: str
    actor: str
    on_behalf_of: str | None = None
    groups: list[str] = []        # the groups of the person counted (on_behalf_of or actor), from the directory
    comment: str = ""


class ApprovalGranted(RunEvent, frozen=True):
    """The gate opened: by quorum (approvers), or by the system after the timeout."""

    step_id: str
    approvers: list[str] = []
    actor: str = "system"
    by_timeout: bool = False


class ApprovalRejected(RunEvent, frozen=True):
    step_id: str
    actor: str
    on_behalf_of: str | None = None
    comment: str = ""


class ApprovalDeadlinePassed(RunEvent, frozen=True):
    """Stored by the JetStream timer at the gate's deadline (a message schedule)."""

    step_id: str


class ApprovalTimedOut(RunEvent, frozen=True):
    step_id: str


class ApprovalAttemptRefused(RunEvent, frozen=True):
    """Someone tried to approve or reject and was refused: auditors ask about these too."""

    step_id: str
    actor: str
    decision: str                 # "approve" or "reject"
    reason: str
    on_behalf_of: str | None = None


# -- rollback ----------------------------------------------------------------------------------

class RollbackStarted(RunEvent, frozen=True):
    """Undo what the run did: `waves` of steps, each wave rolled back together, in order.

    Written before the run ended, it is `on_failure: rollback`'s (`actor` system) and `reason` is
    the run's failure; after the end, someone asked for it, and `reason` is theirs: the run's
    failure, if it had one, stays the one it ended with. A step an earlier rollback of the run
    undid (one that failed, or was cancelled half-way) is not in `waves`: it is not undone twice.
    """

    waves: list[list[str]]
    reason: str
    actor: str = "system"
    on_behalf_of: str | None = None


class StepRollbackScheduled(RunEvent, frozen=True):
    step_id: str
    attempt: int = 1


class StepRollbackStarted(RunEvent, frozen=True):
    """As StepStarted, for an attempt of the step's rollback actions."""

    step_id: str
    attempt: int
    executor: str
    lease: int = 0
    host: str = ""
    boot_id: str = ""
    pid: int = 0
    pid_started: int = 0


class StepRolledBack(RunEvent, frozen=True):
    step_id: str
    attempt: int
    outputs: list[dict[str, Any]] = []
    duration_ms: float = 0.0
    note: str = ""


class StepRollbackFailed(RunEvent, frozen=True):
    step_id: str
    attempt: int
    error: str
    category: ErrorCategory = "unknown"
    outputs: list[dict[str, Any]] = []
    duration_ms: float = 0.0
    note: str = ""


class RollbackCompleted(RunEvent, frozen=True):
    duration_ms: float = 0.0


class RollbackFailed(RunEvent, frozen=True):
    reason: str
    failed_steps: list[str] = []


# -- what the engine could not do ----------------------------------------------------------------

class MessageAbandoned(RunEvent, frozen=True):
    """A service gave up on one of the run's messages: it could not be read, or handling it failed every time."""

    consumer: str                 # the service's consumer: advancer, executor, approval, resilience
    seq: int                      # the message's stream sequence
    subject: str
    deliveries: int
    error: str
    step_id: str | None = None     # the step and attempt the message was about, if any
    attempt: int | None = None



class Unreadable(RunEvent, frozen=True):
    """Never stored: what a reader folds in place of a stored event this version cannot decode (an
    unknown type, a field of the wrong shape), so the run shows it, quarantined, instead of hiding it.
    `stored_type` is the last token of its subject."""

    stored_type: str
    error: str


AnyRunEvent = (
    RunStarted | StepScheduled | StepStarted | StepSucceeded | StepFailed | StepSkipped
    | RunPaused | RunResumed | RunCancelRequested | RunCancelled | RunCompleted | RunFailed | RunRetried
    | ApprovalRequested | ApprovalGiven | ApprovalGranted | ApprovalRejected | ApprovalDeadlinePassed
    | ApprovalTimedOut | ApprovalAttemptRefused
    | RollbackStarted | StepRollbackScheduled | StepRollbackStarted | StepRolledBack | StepRollbackFailed
    | RollbackCompleted | RollbackFailed | StepRetryScheduled | StepNotRetried
    | StepRemediationStarted | StepRemediated | StepRemediationFailed | MessageAbandoned
)

RUN_EVENT_TYPES: tuple[type[RunEvent], ...] = AnyRunEvent.__args__

# How a run ends. Each ending writes exactly one of these, and nothing ends a run but these: a run
# rolled back (by `on_failure: rollback` or by hand) ends with RollbackCompleted or RollbackFailed,
# a rollback cancelled half-way with RunCancelled. The value is the status the run ends in.
ENDINGS: dict[type[RunEvent], str] = {
    RunCompleted: "completed", RunFailed: "failed", RunCancelled: "cancelled",
    RollbackCompleted: "rolled_back", RollbackFailed: "rollback_failed",
}
TERMINAL_EVENTS: tuple[type[RunEvent], ...] = tuple(ENDINGS)
# Written after an ending, these open the run again (a rollback asked for by hand, a retry from the
# failed step); it then ends again with one new terminal event. Any other event after an ending (a
# late timer, a refused approval) is a record, not a reopening.
REOPENING_EVENTS: tuple[type[RunEvent], ...] = (RollbackStarted, RunRetried)


def ended_after(ended: bool, event: RunEvent) -> bool:
    """Whether the run has ended once `event` is applied, given whether it had before.

    The one definition every reader that waits for "the end" folds: a follower stops at an
    event after which the run has ended and nothing more is stored.
    """
    if isinstance(event, TERMINAL_EVENTS):
        return True
    if isinstance(event, REOPENING_EVENTS):
        return False
    return ended
