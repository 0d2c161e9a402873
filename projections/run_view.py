"""One run's detail view, from the state fold the services use."""
from __future__ import annotations

from typing import Any

from services.run.state import Run


def run_view(run: Run) -> dict[str, Any]:
    started = run.started
    return {
        "run_id": run.id,
        "status": run.display_status,
        "playbook": started.playbook.name if started else None,
        "environment": started.environment if started else None,
        "actor": started.actor if started else None,
        "parameters": started.parameters if started else {},
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "paused_by": run.paused_by,
        "cancel_requested_by": run.cancel_requested_by,
        "failure": run.failure or None,
        "version": run.version,
        "steps": [
            {
                "id": s.id,
                "status": s.status,
                "attempt": s.attempt,
                "executor": s.executor,
                "duration_ms": round(s.duration_ms, 3),
                "error": s.error or None,
                "category": s.category or None,
                "reason": s.reason or None,
                "outputs": s.outputs,
                "gate": s.gate or None,
                "approvals": [{"actor": g.actor, "groups": g.groups, "comment": g.comment, "at": g.at.isoformat()}
                              for g in s.approvals],
                "gate_decided_by": s.gate_decided_by,
                "rollback": s.rollback or None,
                "rollback_error": s.rollback_error or None,
            }
            for s in run.steps.values()
        ],
    }
