"""One action run as an attempt runs it, for an error handler's remediation.

The resilience service decides when a remediation runs; how it runs (its arguments resolved
with the run's values, the run's secrets and the process rules in scope, its outcome
redacted) is the executor's, handed to the resilience service by the composition root.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events.playbook import RollbackAction
from services.domain.run.decider import context_of
from services.domain.run.state import Run
from services.errors import PlaybookError
from services.executor.actions import run_action
from services.executor.processes import ProcessRules
from services.executor.scope import enter_attempt
from services.playbook.arguments import resolve_args
from services.secrets import SecretSource, redact


@dataclass(frozen=True, slots=True)
class Remediation:
    secrets: SecretSource
    processes: ProcessRules

    async def __call__(self, run: Run, action: RollbackAction) -> tuple[bool, Any, str]:
        """(succeeded, outputs, error), redacted; call it in the task the remediation belongs to (its scope)."""
        assert run.started is not None
        ctx = context_of(run)
        enter_attempt(ctx, run.started, self.secrets, self.processes)
        try:
            result = await run_action(action.action, resolve_args(action.action, action.args, ctx),
                                      timeout=action.timeout_seconds)
        except PlaybookError as err:
            return False, {}, str(err)
        used = ctx.used_secrets
        return result.ok, redact(result.outputs, used), redact(result.error, used)
