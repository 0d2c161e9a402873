"""Dry runs: what a run would do, decided without executing any action.

Parameters and environments are resolved and every `when` that can be evaluated
before the run is; what depends on step outputs is reported as decided at run time.
The run is recorded (`RunStarted.dry_run`), each step as `StepSkipped` with the plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.run import RunCompleted, RunEvent, StepSkipped
from services.errors import PlaybookError
from services.playbook import topological_order
from services.playbook.plan import plan_waves
from services.playbook.conditions import evaluate
from services.playbook.interpolate import Context
from services.domain.run.state import Run, variables_of


@dataclass(frozen=True, slots=True)
class PlannedStep:
    step_id: str
    action: str
    wave: int                 # steps of one wave may run at the same time
    group: str | None
    needs: list[str]
    would: str                # "run", "skip" or "decided at run time"
    why: str = ""
    gate: str = ""

    def summary(self) -> str:
        parts = [f"would {self.would}" if self.would != "decided at run time" else self.would]
        if self.why:
            parts.append(self.why)
        if self.group:
            parts.append(f"parallel group {self.group}")
        if self.gate:
            parts.append(self.gate)
        return "dry run: " + "; ".join(parts)


def plan(run: Run) -> list[PlannedStep]:
    started = run.started
    assert started is not None
    needs = run.plan.needs
    wave_of = {step_id: i + 1 for i, wave in enumerate(plan_waves(run.plan)) for step_id in wave}
    ctx = Context(parameters=started.parameters, variables=variables_of(started))
    planned = []
    for step_id in topological_order(run.plan):
        spec = run.specs[step_id]
        would, why = _would(spec.when, ctx)
        gate = ""
        if (approval := run.gate_of(step_id)) is not None:
            gate = "approval gate: " + (", ".join(approval.required_approvers) or "any approver")
        planned.append(PlannedStep(step_id=step_id, action=spec.action, wave=wave_of[step_id],
                                   group=spec.parallel_group, needs=list(needs.get(step_id, ())), would=would, why=why,
                                   gate=gate))
    return planned


def _would(when: Any, ctx: Context) -> tuple[str, str]:
    if when is None:
        return "run", ""
    try:
        return ("run", "`when` is true") if evaluate(when, ctx) else ("skip", "`when` is false")
    except PlaybookError as err:
        return "decided at run time", f"`when` needs what the run produces ({err})"


def dry_run_events(run: Run, at: datetime) -> list[RunEvent]:
    """The rest of a dry run: every pending step skipped with its plan, then completed."""
    events: list[RunEvent] = [StepSkipped(run_id=run.id, at=at, step_id=p.step_id, reason=p.summary())
                              for p in plan(run) if run.steps[p.step_id].status == "pending"]
    return [*events, RunCompleted(run_id=run.id, at=at, duration_ms=0.0)]
