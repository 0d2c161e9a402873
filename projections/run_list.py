"""The run list: one summary line per run, folded from the run-level events."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from events.run import (
    ENDINGS, REOPENING_EVENTS, TERMINAL_EVENTS, ApprovalGranted, ApprovalRejected, ApprovalRequested,
    ApprovalTimedOut, RollbackStarted, RunCancelRequested, RunEvent, RunPaused, RunResumed, RunRetried, RunStarted,
)
from services.read import ACTIVE_RUN

# The events this view needs; readers subscribe to just these.
LIST_EVENTS: tuple[type[RunEvent], ...] = tuple(dict.fromkeys((
    RunStarted, RunPaused, RunResumed, RunCancelRequested,
    ApprovalRequested, ApprovalGranted, ApprovalRejected, ApprovalTimedOut,
    RollbackStarted, *TERMINAL_EVENTS, *REOPENING_EVENTS,
)))
ACTIVE = ACTIVE_RUN


class RunSummary(msgspec.Struct, kw_only=True):
    run_id: str
    playbook: str
    status: str
    actor: str
    started_at: datetime
    environment: str | None = None
    finished_at: datetime | None = None
    steps: int = 0
    dry_run: bool = False
    gates_waiting: int = 0
    phase: str = "forward"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def apply(runs: dict[str, RunSummary], event: RunEvent) -> None:
    if isinstance(event, RunStarted):
        if event.run_id in runs:
            return   # a second start: the run's state quarantines it
        runs[event.run_id] = RunSummary(
            run_id=event.run_id, playbook=event.playbook_name, status="running", actor=event.actor,
            started_at=event.at, environment=event.environment, steps=event.step_count,
            dry_run=event.dry_run)
        return
    summary = runs.get(event.run_id)
    if summary is None:
        return
    match event:
        case RunPaused():
            summary.status = "paused"
        case RunResumed():
            summary.status = "rolling_back" if summary.phase == "rollback" else "running"
        case RunCancelRequested():
            summary.status = "cancelling"
        case ApprovalRequested():
            summary.gates_waiting += 1
        case ApprovalGranted() | ApprovalRejected() | ApprovalTimedOut():
            summary.gates_waiting = max(0, summary.gates_waiting - 1)
        case RollbackStarted():
            summary.phase, summary.status, summary.finished_at = "rollback", "rolling_back", None
        case RunRetried():
            summary.phase, summary.status, summary.finished_at = "forward", "running", None
            summary.steps = len(event.playbook.steps) if event.playbook else summary.steps
            summary.gates_waiting = 0      # a retry asks the gates of the steps it runs again afresh
        case _ if type(event) in ENDINGS:
            summary.status, summary.finished_at = ENDINGS[type(event)], event.at
    if summary.status in ("running", "waiting_approval"):
        summary.status = "waiting_approval" if summary.gates_waiting else "running"


def as_dict(summary: RunSummary) -> dict[str, Any]:
    plain: dict[str, Any] = msgspec.to_builtins(summary)
    return plain
