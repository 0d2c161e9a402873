"""The playbook language as data: what an operator writes in YAML, after parsing.

These Structs are the public contract for playbooks. Parsing, locations and checks
that need more than types live in `services/playbook/`.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

ParameterType = Literal["string", "integer", "number", "boolean", "list", "object", "host", "url"]
Sandbox = Literal["none", "bubblewrap"]
FailurePolicy = Literal["stop", "rollback", "continue"]
JitterMode = Literal["full", "equal", "none"]
FileKind = Literal["file", "directory", "any"]
MAX_CIRCUIT_WINDOW = 100   # calls a breaker remembers for its failure rate


class _Spec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """Base of every playbook Struct: unknown keys are errors, defaults stay implicit."""


class Parameter(_Spec):
    name: str
    required: bool = False
    default: Any = None
    description: str = ""
    type: ParameterType | None = None
    choices: list[Any] | None = None
    # For text, host and url values: a regex the whole value must match, and (host, url) the hosts it may name.
    pattern: str | None = None
    allowed_hosts: list[str] | None = None


class Condition(_Spec):
    """A typed comparison (`type` of `left` and `right`), or conditions combined: `all` must hold,
    `any` one must, `not` must not. Used by `when` and `validations`; exactly one of the four is given."""

    type: str | None = None
    left: Any = None
    right: Any = None
    message: str = ""
    all_: list[Condition | str | bool] | None = msgspec.field(default=None, name="all")
    any_: list[Condition | str | bool] | None = msgspec.field(default=None, name="any")
    not_: Condition | str | bool | None = msgspec.field(default=None, name="not")


# `when`: a condition, a text that is true when not empty (after ${...}), a boolean, or a list that all hold.
When = Condition | str | bool | list[Condition | str | bool]


class OutputSpec(_Spec):
    """Export one value of a step's outputs as `${steps.<id>.<name>}`."""

    name: str
    from_: str = msgspec.field(name="from")


class RetryPolicy(_Spec):
    max_attempts: int = 1
    base_delay: float = 1.0
    max_delay: float = 60.0
    exponential_backoff: bool = True
    jitter: JitterMode = "full"
    retry_on_errors: list[str] | None = None
    retry_on_status: list[int] | None = None


class CircuitSpec(_Spec):
    """Protect a shared target. The breaker opens after `failure_threshold` target failures
    in a row or, with `failure_rate`, when that share of the last `window` calls failed
    (once `minimum_calls` were made); it fails calls fast for `open_seconds`, then lets
    `half_open_trials` calls test the target."""

    key: str | None = None          # default: scheme://host:port for http, playbook:step otherwise
    failure_threshold: Annotated[int, msgspec.Meta(ge=1)] = 5
    failure_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    window: Annotated[int, msgspec.Meta(ge=1, le=MAX_CIRCUIT_WINDOW)] = 20
    minimum_calls: Annotated[int, msgspec.Meta(ge=1)] = 10
    open_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    half_open_trials: Annotated[int, msgspec.Meta(ge=1)] = 1
    # `wait`: while open, the attempt fails with `retry_after` set to when the breaker
    # half-opens, so the step's retry policy waits for it instead of failing fast.
    on_open: Literal["fail", "wait"] = "fail"


class ApprovalGate(_Spec):
    message: str = ""
    required_approvers: list[str] = []
    min_approvals: int | None = None
    timeout_seconds: float | None = None
    auto_approve_after_timeout: bool = False
    allow_self_approval: bool = False


class RollbackAction(_Spec):
    action: str
    args: dict[str, Any] = {}
    description: str = ""
    timeout_seconds: float | None = None


class ErrorHandler(_Spec):
    """On a failure of this category (or whose text matches `pattern`), run `run` first,
    then retry at once (`then: retry`) or let the failure stand (`then: fail`)."""

    run: RollbackAction
    category: str | None = None
    pattern: str | None = None
    then: Literal["retry", "fail"] = "retry"


class _Validator(_Spec, tag_field="type"):
    """A check that must hold before the step's action runs; `message` is added when it fails."""

    message: str = ""


class HttpStatus(_Validator, kw_only=True, tag="http_status"):
    url: str
    expected_status: int | list[int] = 200
    method: str = "GET"
    headers: dict[str, str] = {}
    timeout_seconds: float = 10.0


class PortOpen(_Validator, kw_only=True, tag="port_open"):
    host: str = "127.0.0.1"
    port: int
    timeout_seconds: float = 5.0


class FileExists(_Validator, kw_only=True, tag="file_exists"):
    path: str
    kind: FileKind = "any"


class DiskSpace(_Validator, kw_only=True, tag="disk_space"):
    """At least one of the thresholds is required."""

    path: str = "/"
    min_free_gb: float | None = None
    min_free_percent: float | None = None


class MemoryUsage(_Validator, kw_only=True, tag="memory_usage"):
    max_used_percent: float


class CommandSucceeds(_Validator, kw_only=True, tag="command_succeeds"):
    """Exactly one of `command` (run by /bin/sh) and `argv` is required."""

    command: str | None = None
    argv: list[str] | None = None
    timeout_seconds: float = 30.0
    expected_returncode: int = 0


Validator = HttpStatus | PortOpen | FileExists | DiskSpace | MemoryUsage | CommandSucceeds


class Step(_Spec):
    id: str
    action: str
    name: str = ""
    args: dict[str, Any] = {}
    depends_on: list[str] | None = None
    parallel_group: str | None = None
    when: When | None = None
    timeout_seconds: float | None = None
    continue_on_failure: bool = False
    outputs: list[OutputSpec] = []
    validators: list[Validator] = []
    validations: list[Condition] = []
    retry: RetryPolicy | None = None
    # http_request steps have a breaker on their origin unless `circuit: false`;
    # any other step has one only if it says `circuit:` (true: the defaults).
    circuit: CircuitSpec | bool | None = None
    approval_gate: ApprovalGate | None = None
    rollback: list[RollbackAction] = []


def circuit_of(step: Step) -> CircuitSpec | None:
    """The breaker a step calls through, if any."""
    if isinstance(step.circuit, CircuitSpec):
        return step.circuit
    if step.circuit is True or (step.circuit is None and step.action == "http_request"):
        return CircuitSpec()
    return None


class Playbook(_Spec):
    name: str
    steps: list[Step]
    description: str = ""
    version: str | int | float = "1"
    parameters: list[Parameter] = []
    environments: dict[str, dict[str, Any]] = {}
    variables: dict[str, Any] = {}
    on_failure: FailurePolicy = "stop"
    on_rollback_failure: Literal["continue", "stop"] = "continue"
    error_handlers: list[ErrorHandler] = []
    # Run every process of this playbook's steps in a bubblewrap sandbox (the engine may impose it on all).
    sandbox: Sandbox | None = None


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """The order a playbook runs in, derived once at validation and pinned on the run.

    `needs[step]` are the steps that must be finished (succeeded, skipped, or failed with
    `continue_on_failure`) before `step` may be scheduled.
    """

    needs: dict[str, list[str]]
