"""Commands: requests on `pb.cmd.<Command>` with a JSON body and a JSON `Reply`.

Anyone (CLI, HTTP API, MCP, an external system with `nats req`) drives runs by sending
these, with a credential: the `Authorization: Bearer <token>` header (and, for an admin
acting for someone, `Playbook-On-Behalf-Of`). Who acts is that credential, never a name
in the body: every event records the verified principal.
"""
from __future__ import annotations

from typing import Any

import msgspec

from events.subjects import RunId, StepId


class Command(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """`actor` and `on_behalf_of` are set by the engine from the verified credential before it decides.

    A sender may leave them out (the CLI and the web do). One that fills them in must name
    its caller: any other name is refused as `forged_actor` and recorded.
    """

    actor: str | None = None
    on_behalf_of: str | None = None


class StartRun(Command, frozen=True):
    """Start a run of a playbook given as YAML text (the service validates it)."""

    playbook: str
    source: str = "<playbook>"
    parameters: dict[str, Any] = {}
    environment: str | None = None
    run_id: RunId | None = None
    dry_run: bool = False
    allow_unsafe_shell: bool = False


class PauseRun(Command, frozen=True):
    run_id: RunId
    reason: str = ""


class ResumeRun(Command, frozen=True):
    run_id: RunId


class CancelRun(Command, frozen=True):
    run_id: RunId
    reason: str = ""


class RollbackRun(Command, frozen=True):
    """Undo a failed, cancelled or completed run by hand."""

    run_id: RunId
    reason: str = ""


class RetryRun(Command, frozen=True):
    """Continue a failed or cancelled run in place, from its failed steps or from `from_step`.

    Steps that succeeded keep their outputs; the failed step and everything downstream of it
    (of `from_step`, when given) run again as new attempts. `parameters` correct the run's
    values (recorded on `RunRetried`). `playbook` (YAML text, from `source`) replaces the
    pinned playbook: it is validated like a start and must agree with the steps that ran.
    """

    run_id: str
    from_step: str | None = None
    parameters: dict[str, Any] = {}
    reason: str = ""
    playbook: str | None = None
    source: str = "<playbook>"


class ApproveStep(Command, frozen=True):
    run_id: RunId
    step_id: StepId
    comment: str = ""


class RejectStep(Command, frozen=True):
    run_id: RunId
    step_id: StepId
    comment: str = ""


class ResetCircuit(Command, frozen=True):
    """Close a circuit breaker by hand (recorded with the actor)."""

    key: str


AnyCommand = (StartRun | PauseRun | ResumeRun | CancelRun | RollbackRun | RetryRun | ApproveStep | RejectStep
              | ResetCircuit)
COMMAND_TYPES: tuple[type[Command], ...] = AnyCommand.__args__


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str
    details: list[dict[str, Any]] = []


class Reply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The answer to every command: accepted with the events it produced, or rejected."""

    accepted: bool
    run_id: str | None = None
    events: list[dict[str, Any]] = []
    error: Rejection | None = None
