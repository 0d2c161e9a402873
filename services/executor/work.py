"""What one attempt does: validators, the action behind the step's circuit breaker, exported outputs and
validations; or, for a rollback attempt, the step's rollback actions in order. Its outcome is redacted of
every secret the attempt held."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from nats.aio.client import Client as NATS

from events.circuit import CircuitEvent, CircuitTrialStarted
from events.playbook import circuit_of
from events.run import ErrorCategory
from services.aggregates import BreakerRepository
from services.domain.breaker import Breaker, after_call, before_call, circuit_key, trial_abandoned
from services.domain.classify import classify
from services.domain.run.decider import context_of
from services.domain.run.state import Run
from services.errors import PlaybookError
from services.executor.actions import ActionResult, run_action
from services.executor.actions.base import live_output
from services.executor.live_output import LiveOutput
from services.executor.processes import ProcessRules
from services.executor.scope import enter_attempt
from services.executor.validators import run_validators
from services.leases import AttemptId
from services.playbook.arguments import export_outputs, failed_validation, resolve_args
from services.playbook.interpolate import Context
from services.secrets import redact
from services.settings import Settings


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt produced, before it is recorded."""

    outputs: Any
    error: str = ""
    category: ErrorCategory = "unknown"

    def redacted(self, ctx: Context) -> Outcome:
        """The outcome with every secret the attempt used replaced by `***`."""
        if not ctx.used_secrets:
            return self
        return Outcome(redact(self.outputs, ctx.used_secrets), redact(self.error, ctx.used_secrets), self.category)


class Work:
    def __init__(self, nc: NATS, breakers: BreakerRepository, settings: Settings) -> None:
        self.nc, self.breakers = nc, breakers
        self.secrets, self.patterns = settings.secrets, settings.error_patterns
        self.processes = ProcessRules.from_environ(settings.environ)

    async def __call__(self, run: Run, attempt: AttemptId) -> Outcome:
        return await (self._undo(run, attempt) if attempt.rollback else self._do(run, attempt))

    def _context(self, run: Run, attempt: AttemptId) -> Context:
        """Call it inside the attempt's own task: the scope it opens (secrets, process rules) lasts as long."""
        ctx = context_of(run)
        assert run.started is not None
        enter_attempt(ctx, run.started, self.secrets, self.processes, attempt)
        return ctx

    async def _do(self, run: Run, attempt: AttemptId) -> Outcome:
        """A step's attempt: validators, the action, exported outputs, validations."""
        step_id = attempt.step_id
        spec = run.specs[step_id]
        ctx = self._context(run, attempt)
        try:
            args = resolve_args(spec.action, spec.args, ctx)
            if problem := await run_validators(spec.validators, ctx):
                return Outcome({}, problem, "validation").redacted(ctx)
        except PlaybookError as err:
            return Outcome({}, str(err), "configuration").redacted(ctx)
        live = LiveOutput(self.nc, run.id, step_id, attempt.number, ctx.used_secrets)
        watching = live_output.set(live)
        try:
            result = await self._call(run, step_id, args)
        finally:
            live_output.reset(watching)
            await live.close()
        if not result.ok:
            return Outcome(result.outputs, result.error, result.category or "unknown").redacted(ctx)
        try:
            outputs = export_outputs(spec.outputs, result.outputs)
        except PlaybookError as err:
            return Outcome(result.outputs, str(err), "configuration").redacted(ctx)
        ctx.local = outputs
        if problem := failed_validation(spec.validations, ctx):
            return Outcome(outputs, problem, "validation").redacted(ctx)
        return Outcome(outputs).redacted(ctx)

    async def _call(self, run: Run, step_id: str, args: dict[str, Any]) -> ActionResult:
        """The action, behind the step's circuit breaker when it has one."""
        spec = run.specs[step_id]
        circuit = circuit_of(spec)
        if circuit is None:
            return await run_action(spec.action, args, timeout=spec.timeout_seconds)
        key = circuit_key(run.playbook.name, spec, args)

        def ask(breaker: Breaker) -> tuple[list[CircuitEvent], tuple[str | None, bool]]:
            events, denial = before_call(breaker, circuit, run.id, step_id, now())
            return events, (denial, any(isinstance(e, CircuitTrialStarted) for e in events))

        denial, trial = await self.breakers.change_answering(key, ask)
        if denial:
            outputs: dict[str, Any] = {"circuit_open": key}   # the breaker that refused the call: a dependency failure
            if circuit.on_open == "wait" and (breaker := await self.breakers.get(key)).until is not None:
                outputs["retry_after"] = max(0.0, (breaker.until - now()).total_seconds())
            return ActionResult(ok=False, error=denial, category="dependency", outputs=outputs)
        try:
            result = await run_action(spec.action, args, timeout=spec.timeout_seconds)
        except asyncio.CancelledError:
            if trial:   # shielded: the cancel that ends the call must not also keep the trial's place taken
                await asyncio.shield(self.breakers.change(key, lambda b: trial_abandoned(b, run.id, step_id, now())))
            raise
        failure = None if result.ok else classify(result.error, result.outputs, result.category, self.patterns).category
        await self.breakers.change(
            key, lambda b: after_call(b, circuit, run.id, step_id, now(), failure, result.error))
        return result

    async def _undo(self, run: Run, attempt: AttemptId) -> Outcome:
        """A step's rollback actions, in order, with the step's own outputs in reach."""
        step_id = attempt.step_id
        ctx = self._context(run, attempt)
        ctx.local = run.steps[step_id].attempt.outputs
        done: list[dict[str, Any]] = []
        for number, action in enumerate(run.specs[step_id].rollback, start=1):
            try:
                args = resolve_args(action.action, action.args, ctx)
            except PlaybookError as err:
                return Outcome(done, f"rollback action {number} ({action.action}): {err}",
                               "configuration").redacted(ctx)
            result = await run_action(action.action, args, timeout=action.timeout_seconds)
            done.append(result.outputs)
            if not result.ok:
                return Outcome(done, f"rollback action {number} ({action.action}) failed: {result.error}",
                               result.category or "unknown").redacted(ctx)
        return Outcome(done).redacted(ctx)
