"""What the tools answer: typed results, so an agent gets an output schema and structured content."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Gate(BaseModel):
    step_id: str
    message: str
    approvals: list[str] = []
    deadline: str | None = None


class Execution(BaseModel):
    """A run as `execute_playbook_advanced` leaves it: started, and with `wait` where it stopped waiting."""

    run_id: str
    status: str
    finished: bool = False
    waiting_gates: list[Gate] = []
    failure: str | None = None
    rollback_failure: str | None = None
    events: list[str] = []


class CommandResult(BaseModel):
    run_id: str
    accepted: bool
    events: list[str]          # what the command recorded; empty when it had already taken effect


class StepStatus(BaseModel):
    id: str
    status: str
    attempt: int
    duration_ms: float
    error: str | None = None
    category: str | None = None
    reason: str | None = None
    gate: str | None = None
    rollback: str | None = None
    retry: str | None = None


class ExecutionStatus(BaseModel):
    run_id: str
    status: str
    playbook: str | None
    environment: str | None
    actor: str | None
    started_at: str | None
    finished_at: str | None
    failure: str | None
    rollback_requested_by: str | None = None   # "system": under on_failure: rollback
    rollback_reason: str | None = None
    rollback_failure: str | None = None
    phase: str
    dry_run: bool
    gates_waiting: int
    waiting_gates: list[Gate]
    steps: list[StepStatus]


class ExecutionSummary(BaseModel):
    run_id: str
    playbook: str
    status: str
    actor: str
    started_at: str
    environment: str | None = None
    finished_at: str | None = None
    dry_run: bool = False
    gates_waiting: int = 0


class Executions(BaseModel):
    runs: list[ExecutionSummary]


class LogLine(BaseModel):
    seq: int
    at: str
    step_id: str
    attempt: int
    phase: str                # step, rollback, remediation
    stream: str               # stdout, stderr, error
    line: str


class ExecutionLogs(BaseModel):
    run_id: str
    lines: list[LogLine]
    truncated: bool           # older lines left out (tail, or the size cap)


class StepMetrics(BaseModel):
    step: str
    count: int
    succeeded: int
    failed: int
    success_rate: float | None
    mean_ms: float | None
    retries: int


class ExecutionMetrics(BaseModel):
    """One run's figures, or a playbook's over its latest runs (the dashboard's fold, over fewer events)."""

    playbook: str
    run_id: str | None = None
    runs: int
    completed: int
    failed: int
    cancelled: int
    success_rate: float | None
    mean_duration_ms: float | None
    retries: int
    retries_by_category: dict[str, int]
    steps: list[StepMetrics]


class Finding(BaseModel):
    code: str
    severity: str
    message: str
    file: str
    line: int | None = None
    column: int | None = None
    step_id: str | None = None
    field: str | None = None


class Validation(BaseModel):
    valid: bool
    errors: int
    diagnostics: list[Finding]
    left_out: int = 0          # findings beyond MAX_FINDINGS, the least severe first (`playbook validate` has all)


def fields(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """The keys of `data` that the model declares."""
    return {k: v for k, v in data.items() if k in model.model_fields}


class PlaybookInsights(BaseModel):
    """What the learning service learned (events/insights.py, as JSON): per playbook and step, per target,
    steps failing together, and recommendations with their evidence."""
    position: int             # the last stream sequence learned
    playbooks: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    correlations: list[dict[str, Any]] = []
