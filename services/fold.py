"""What reading a run needs without a NATS client: the fold of its events, and a pinned playbook from its bytes.

The pure half of `services.read` (which adds the stores that read over nats-py): the CLI's
own connection (`ui.cli.live_run`) folds and resolves with exactly these. What only some
readers ask for (a dry run's plan, the plan's waves, a gate's quorum) loads when first
asked: following a run or showing its status needs neither conditions nor interpolation.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from services.domain.run.state import (
    ACTIVE_RUN, FINISHED_RUN, RUN_STATUSES, GateState, Quarantined, Run, StepState, evolve, fold,
)
from services.object_layout import chunk_subject, meta_subject, whole
from services.playbook_pins import ParsedPlaybook, decode_parsed, digest_of, object_name, with_playbook

if TYPE_CHECKING:
    from events.playbook import ApprovalGate, Plan
    from services.domain.run.dry_run import PlannedStep

__all__ = ["ACTIVE_RUN", "FINISHED_RUN", "RUN_STATUSES", "GateState", "ParsedPlaybook", "Quarantined", "Run",
           "StepState", "approvals_needed", "chunk_subject", "decode_parsed", "digest_of", "dry_run_plan", "evolve",
           "fold", "meta_subject", "object_name", "plan_waves", "whole", "with_playbook"]


def dry_run_plan(run: Run) -> list[PlannedStep]:
    """What a dry run would do, step by step (`services.domain.run.dry_run`)."""
    from services.domain.run.dry_run import plan
    return plan(run)


def plan_waves(plan: Plan) -> list[list[str]]:
    """Steps grouped by how deep they sit in the plan (`services.playbook.plan`)."""
    from services.playbook.plan import plan_waves as waves
    return waves(plan)


def approvals_needed(gate: ApprovalGate) -> int:
    """How many distinct people a gate needs (`services.domain.run.gates`)."""
    from services.domain.run.gates import approvals_needed as needed
    return needed(gate)
