"""One run's detail view, from the state fold the services use, and its timeline of events."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from events.playbook import ApprovalGate, Step
from events.run import ApprovalTimedOut, RunEvent
from projections.sentences import sentence
from services.fold import Quarantined, Run, StepState, approvals_needed, plan_waves


def run_view(run: Run) -> dict[str, Any]:
    started = run.started
    needs = run.plan.needs if started else {}
    waves = plan_waves(run.plan) if started else []
    pin = started.pin if started else None
    wave_of = {step_id: i for i, wave in enumerate(waves) for step_id in wave}
    rollback_wave_of = {step_id: i for i, wave in enumerate(run.rollback_waves) for step_id in wave}
    return {
        "run_id": run.id,
        "status": run.display_status,
        "playbook": started.playbook_name if started else None,
        "playbook_version": pin.version if pin else None,
        "playbook_digest": pin.digest if pin else None,
        "environment": started.environment if started else None,
        "actor": started.actor if started else None,
        "parameters": started.parameters if started else {},
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "paused_by": run.steering.paused_by,
        "pause_reason": run.steering.pause_reason or None,
        "resumed_by": run.steering.resumed_by,
        "cancel_requested_by": run.steering.cancel_requested_by,
        "cancel_reason": run.steering.cancel_reason or None,
        "stopped_by_engine": run.steering.cancel_fails,   # the engine gave up on a message: it ends failed
        "failure": run.failure or None,
        # The rollback's, kept apart from the failure ("system": the engine's, under on_failure: rollback).
        "rollback_requested_by": run.rollback.actor if run.rollback else None,
        "rollback_on_behalf_of": run.rollback.on_behalf_of if run.rollback else None,
        "rollback_reason": (run.rollback.reason or None) if run.rollback else None,
        "rollback_failure": (run.rollback.failure or None) if run.rollback else None,
        "version": run.version,
        "dry_run": started.dry_run if started else False,
        "on_failure_chosen": started.on_failure if started else None,    # over the playbook's, at the start
        "approval_required": started.approval_required if started else False,   # every step waits for one
        "phase": run.phase,
        "event_count": run.event_count,
        "gates_waiting": run.gates_waiting,
        "quarantined": [{"seq": q.seq, "event": q.event, "step_id": q.step_id, "reason": q.reason}
                        for q in run.quarantined],
        "waves": waves,
        "rollback_waves": run.rollback_waves,
        "steps": [
            {
                "id": s.id,
                "status": s.status,
                "attempt": s.attempt.number,
                "executor": s.attempt.executor,
                "duration_ms": round(s.attempt.duration_ms, 3),
                "error": s.attempt.error or None,
                "category": s.attempt.category or None,
                "reason": s.reason or None,
                "outputs": s.attempt.outputs,
                "note": s.attempt.note or None,
                "gate": s.gate.status or None,
                "approvals": _approvals(s),
                "gate_decided_by": s.gate.decided_by,
                "rollback": s.rollback.status or None,
                "rollback_error": s.rollback.error or None,
                **_plan_of(run.specs.get(s.id), needs.get(s.id, [])),
                "wave": wave_of.get(s.id),
                "rollback_wave": rollback_wave_of.get(s.id),
                "started_at": _iso(s.started_at),
                "finished_at": _iso(s.finished_at),
                "retry": (s.retry.status if s.retry.status != "waiting" or run.retry_due(s) else "") or None,
                "retry_due": _iso(run.retry_due(s)),
                "remediation": s.retry.remediation or None,
                "approval_gate": _gate(run.gate_of(s.id), s),
            }
            for s in run.steps.values()
        ],
    }


def _plan_of(spec: Step | None, needs: list[str]) -> dict[str, Any]:
    return {
        "name": (spec.name or None) if spec else None,
        "action": spec.action if spec else None,
        "depends_on": list(needs),
        "parallel_group": spec.parallel_group if spec else None,
    }


def _gate(gate: ApprovalGate | None, s: StepState) -> dict[str, Any] | None:
    """The gate as written (with the approvals it really needs) and where its decision stands."""
    if gate is None:
        return None
    return {
        "message": s.gate.message or gate.message,   # as asked once requested, else as written
        "required_approvers": list(gate.required_approvers),
        "min_approvals": approvals_needed(gate),
        "timeout_seconds": gate.timeout_seconds,
        "auto_approve_after_timeout": gate.auto_approve_after_timeout,
        "allow_self_approval": gate.allow_self_approval,
        "status": s.gate.status or "not_requested",
        "deadline": _iso(s.gate.deadline),
        "deadline_passed": s.gate.deadline_passed,
        "approvals": _approvals(s),
        "decided_by": s.gate.decided_by,
        "rejection_comment": s.gate.comment or None,
    }


def _approvals(s: StepState) -> list[dict[str, Any]]:
    return [{"actor": g.actor, "groups": g.groups, "comment": g.comment, "at": g.at.isoformat()}
            for g in s.gate.approvals]


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


# -- timeline -----------------------------------------------------------------------------

def timeline(envelopes: Iterable[tuple[int, RunEvent]],
             quarantined: Sequence[Quarantined] = ()) -> list[dict[str, Any]]:
    """The run's events as the dashboard shows them: attempts, retries, waits, decisions.

    One entry per event, `{seq, at, kind, step_id, attempt, detail, actor}`; the deadline
    timer's own message is left out (what it caused is shown). An event the run's state
    quarantined says so, and why, instead of what it would have meant.
    """
    aside = {q.seq: q.reason for q in quarantined}
    entries = []
    for seq, event in envelopes:
        detail = f"quarantined, not applied: {aside[seq]}" if seq in aside else sentence(event)
        if detail is None:
            continue
        entries.append({
            "seq": seq,
            "at": event.at.isoformat(),
            "kind": type(event).__name__,
            "step_id": getattr(event, "step_id", None),
            "attempt": getattr(event, "attempt", None),
            "detail": detail,
            "actor": "system" if isinstance(event, ApprovalTimedOut) else getattr(event, "actor", None),
        })
    return entries
