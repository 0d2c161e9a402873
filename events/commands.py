"""Commands: requests on `pb.cmd.<Command>` with a JSON body and a JSON `Reply`.

Anyone (CLI, HTTP API, MCP, an external system with `nats req`) drives runs by sending
these, with a credential: the `Authorization: Bearer <token>` header (and, for an admin
acting for someone, `Playbook-On-Behalf-Of`). Who acts is that credential, never a name
in the body: every event records the verified principal.
"""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from events.playbook import FailurePolicy
from events.subjects import RunId, StepId

# The name of a text staged in PB_UPLOADS, as the engine's upload gives it (services/playbook_store.py); "": none.
UploadName = Annotated[str, msgspec.Meta(pattern="^([0-9a-f]{32})?$")]
# A person's words on a command (why, a gate's comment): a few sentences, recorded in the run's events.
Remark = Annotated[str, msgspec.Meta(max_length=2000)]


class Command(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True, forbid_unknown_fields=True):
    """`actor` and `on_behalf_of` are set by the engine from the verified credential before it decides.

    A sender may leave them out (the CLI and the web do). One that fills them in must name
    its caller: any other name is refused as `forged_actor` and recorded.
    """

    actor: str | None = None
    on_behalf_of: str | None = None


class StartRun(Command, frozen=True):
    """Start a run of exactly one of: YAML text (`playbook`); a text uploaded to PB_UPLOADS first
    (`upload`, for texts larger than one NATS message); or `playbook_id`, a catalog `name` (its latest
    version), `name@version`, or the `sha256:<hex>` digest of a text already stored. The service validates it."""

    playbook: str = ""
    upload: UploadName = ""
    playbook_id: str = ""
    source: str = "<playbook>"
    parameters: dict[str, Any] = {}
    environment: str | None = None
    run_id: RunId | None = None
    dry_run: bool = False
    allow_unsafe_shell: bool = False
    # What a failed step does to this run (stop, continue, rollback) instead of the playbook's `on_failure`.
    on_failure: FailurePolicy | None = None
    # Every step waits for an approval before it runs: its own gate, else one any approver but the starter gives.
    approval_required: bool = False


class PauseRun(Command, frozen=True):
    run_id: RunId
    reason: Remark = ""


class ResumeRun(Command, frozen=True):
    run_id: RunId


class CancelRun(Command, frozen=True):
    run_id: RunId
    reason: Remark = ""


class RollbackRun(Command, frozen=True):
    """Undo a failed, cancelled or completed run by hand."""

    run_id: RunId
    reason: Remark = ""


class RetryRun(Command, frozen=True):
    """Continue a failed or cancelled run in place, from its failed steps or from `from_step`.

    Steps that succeeded keep their outputs; the failed step and everything downstream of it
    (of `from_step`, when given) run again as new attempts. `parameters` correct the run's
    values (recorded on `RunRetried`). `playbook` (YAML text, from `source`) or `playbook_id` (a
    catalog version or a stored text's digest, as StartRun's) replaces the pinned playbook: it is
    validated like a start and must agree with the steps that ran.
    """

    run_id: RunId
    from_step: StepId | None = None
    parameters: dict[str, Any] = {}
    reason: Remark = ""
    playbook: str | None = None
    playbook_id: str = ""
    source: str = "<playbook>"


class ApproveStep(Command, frozen=True):
    run_id: RunId
    step_id: StepId
    comment: Remark = ""


class RejectStep(Command, frozen=True):
    run_id: RunId
    step_id: StepId
    comment: Remark = ""


class PublishPlaybook(Command, frozen=True):
    """Store a version of a playbook in the catalog: its YAML `text`, or an `upload` to PB_UPLOADS.

    The version is `version` if given, else the playbook's own `version:` key (default "1").
    Publishing the same text again is nothing new; a different text under a published version is refused.
    """

    text: str = ""
    upload: UploadName = ""
    version: str = ""
    source: str = ""


class ResetCircuit(Command, frozen=True):
    """Close a circuit breaker by hand (recorded with the actor)."""

    key: str


AnyCommand = (StartRun | PauseRun | ResumeRun | CancelRun | RollbackRun | RetryRun | ApproveStep | RejectStep
              | ResetCircuit | PublishPlaybook)
COMMAND_TYPES: tuple[type[Command], ...] = AnyCommand.__args__


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str
    details: list[dict[str, Any]] = []


HEADROOM = 4096     # bytes of a command's NATS message left for headers (the caller's credential, say)


class Reply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The answer to every command: accepted with the events it produced, or rejected."""

    accepted: bool
    run_id: str | None = None
    events: list[dict[str, Any]] = []
    error: Rejection | None = None
    warnings: list[dict[str, Any]] = []     # what the playbook's checks warn of, for a run started all the same
    found: list[dict[str, Any]] = []        # what a command with nothing to do found done (a publish: that version)
