"""What reading a run needs without a NATS client: the fold of its events, and a pinned playbook from its bytes.

The pure half of `services.read` (which adds the stores that read over nats-py): the CLI's
own connection (`ui.cli.live_run`) folds and resolves with exactly these.
"""
from __future__ import annotations

from services.domain.run.dry_run import PlannedStep
from services.domain.run.dry_run import plan as dry_run_plan
from services.domain.run.gates import approvals_needed
from services.domain.run.state import (
    ACTIVE_RUN, FINISHED_RUN, RUN_STATUSES, Quarantined, Run, StepState, evolve, fold,
)
from services.object_layout import chunk_subject, meta_subject, whole
from services.playbook.plan import plan_waves
from services.playbook_pins import ParsedPlaybook, decode_parsed, digest_of, object_name, with_playbook

__all__ = ["ACTIVE_RUN", "FINISHED_RUN", "RUN_STATUSES", "ParsedPlaybook", "PlannedStep", "Quarantined", "Run",
           "StepState", "approvals_needed", "chunk_subject", "decode_parsed", "digest_of", "dry_run_plan", "evolve",
           "fold", "meta_subject", "object_name", "plan_waves", "whole", "with_playbook"]
