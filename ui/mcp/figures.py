"""A run's or a playbook's figures: the dashboard's metrics fold, over only the events asked about."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from events.run import RunEvent
from projections.metrics import Metrics
from ui.mcp.models import ExecutionMetrics, StepMetrics


def run_metrics(run_id: str, playbook: str, envelopes: Sequence[tuple[int, RunEvent]]) -> ExecutionMetrics:
    return _figures(playbook, [envelopes]).model_copy(update={"run_id": run_id})


def playbook_metrics(playbook: str, runs: Iterable[Sequence[tuple[int, RunEvent]]]) -> ExecutionMetrics:
    return _figures(playbook, runs)


def _figures(playbook: str, runs: Iterable[Sequence[tuple[int, RunEvent]]]) -> ExecutionMetrics:
    metrics = Metrics()
    # In stream order across runs: the fold ignores an event older than the last it applied.
    for seq, event in sorted((e for envelopes in runs for e in envelopes), key=lambda e: e[0]):
        metrics.apply(seq, event)
    figures = metrics.as_json(most_steps=None)     # one playbook's: every step of it
    totals: dict[str, Any] = next((p for p in figures["playbooks"] if p["playbook"] == playbook), {})
    steps = [StepMetrics(**{k: s[k] for k in StepMetrics.model_fields})
             for s in figures["steps"] if s["playbook"] == playbook]
    return ExecutionMetrics(
        playbook=playbook, runs=totals.get("runs", 0), completed=totals.get("completed", 0),
        failed=totals.get("failed", 0), cancelled=totals.get("cancelled", 0),
        success_rate=totals.get("success_rate"), mean_duration_ms=totals.get("mean_duration_ms"),
        retries=figures["retries"]["total"], retries_by_category=figures["retries"]["by_category"], steps=steps)
