"""Request bodies of the JSON API: decoded strictly, so a bad body is a 400 that says what
is wrong. The OpenAPI document takes its schemas from these same Structs."""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from events import subjects
from events.playbook import FailurePolicy

RunId = Annotated[str, msgspec.Meta(pattern=f"^{subjects.RUN_ID_PATTERN}$")]
StepId = Annotated[str, msgspec.Meta(pattern=f"^{subjects.STEP_ID_PATTERN}$")]


class _Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class StartBody(_Body):
    """Start a run: `playbook` is YAML text, or `playbook_id` names a catalog version (`name`, its latest;
    `name@version`) or a stored text's `sha256:` digest."""

    playbook: str | None = None
    playbook_id: str | None = None
    parameters: dict[str, Any] = {}
    environment: str | None = None
    dry_run: bool = False
    allow_unsafe_shell: bool = False
    run_id: RunId | None = None
    # What a failed step does to this run (stop, continue, rollback) instead of the playbook's `on_failure`.
    on_failure: FailurePolicy | None = None
    # Every step waits for an approval before it runs (its own gate, else one any approver but the starter gives).
    approval_required: bool = False


class ValidateBody(_Body):
    playbook: str
    parameters: dict[str, Any] | None = None
    environment: str | None = None


class PublishBody(_Body):
    """Publish a version: `playbook` is YAML text; `version` overrides the playbook's own `version:`."""

    playbook: str
    version: str = ""


class ControlBody(_Body):
    """Pause, resume, cancel or roll back; the reason is recorded with the actor."""

    reason: str = ""


class RetryBody(_Body):
    """Retry a failed or cancelled run in place: from its failed steps, or from `from_step`.

    `parameters` correct the run's values; `playbook` (YAML text) or `playbook_id` (a stored
    playbook) replaces the pinned playbook, checked against the steps that ran.
    """

    from_step: StepId | None = None
    parameters: dict[str, Any] = {}
    reason: str = ""
    playbook: str | None = None
    playbook_id: str | None = None


class DecisionBody(_Body):
    """Approve or reject a gate, with an optional comment."""

    comment: str = ""


class ResetCircuitBody(_Body):
    key: str


class RebuildBody(_Body):
    """A rebuild takes nothing; the body is JSON like every change's."""


class SignInBody(_Body):
    """Sign in to the dashboard with an API token, or the code of a one-time sign-in link."""

    token: str | None = None
    code: str | None = None


class SignOutBody(_Body):
    """Signing out takes nothing; the body is JSON like every change's."""


BODIES: tuple[type[_Body], ...] = (StartBody, ValidateBody, PublishBody, ControlBody, RetryBody, DecisionBody,
                                   ResetCircuitBody, RebuildBody, SignInBody, SignOutBody)
