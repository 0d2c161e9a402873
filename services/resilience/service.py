"""The resilience service: reacts to `StepFailed`, classifies, and retries on a durable timer.

The retry is a JetStream message schedule that stores the next `StepScheduled` in the
run's stream when due, so a backoff that ends while the engine is down is honoured
when it is back, once: the timer fires once, and a redelivered decision re-arms the
same timer (same message id) rather than adding another.
"""
from __future__ import annotations

import logging
import random
import re
from datetime import datetime, timezone

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.playbook import ErrorHandler
from events.run import RunEvent, StepFailed, StepRemediated, StepRemediationFailed, StepRemediationStarted, StepScheduled
from services.executor.actions import run_action
from services.executor.step import resolve_args
from services.errors import PlaybookError
from services.resilience.classify import Classification, classify
from services.resilience.config import configured_patterns
from services.resilience.policy import decide_retry
from services.run.decider import DecideRetry, context_of, decide
from services.run.repository import RunRepository
from services.run.state import Run
from services.runtime import Consumer
from services.executor.processes import ProcessRules
from services.executor.scope import enter_attempt
from services.secrets import SecretSource, redact

log = logging.getLogger(__name__)


def matching_handler(handlers: list[ErrorHandler], found: Classification, failed: StepFailed) -> int | None:
    """The first error handler for this failure's category or text, by index."""
    text = " ".join(str(part) for part in (failed.error, failed.outputs.get("stderr", ""), failed.outputs.get("stdout", "")))
    for index, handler in enumerate(handlers):
        if handler.category and handler.category == found.category:
            return index
        if handler.pattern and re.search(handler.pattern, text, re.IGNORECASE):
            return index
    return None


class ResilienceService:
    def __init__(self, nc: NATS, runs: RunRepository, *, ack_wait: float = 30.0) -> None:
        self.runs = runs
        self.patterns = configured_patterns()
        self.secrets, self.processes = SecretSource(), ProcessRules.from_environ()
        self.consumer = Consumer(nc, runs.store.stream, "resilience", [subjects.events_of_type("StepFailed")],
                                 self._on_failed, ack_wait=ack_wait)

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self, grace: float = 10.0) -> None:
        await self.consumer.stop(grace)

    async def _on_failed(self, msg: Msg, event: RunEvent, seq: int) -> None:
        if not isinstance(event, StepFailed):
            return
        run = await self.runs.get(event.run_id, min_version=seq)
        step = run.steps.get(event.step_id)
        if step is None or step.attempt != event.attempt or not step.retry:
            return
        if step.retry == "deciding":
            policy = run.specs[step.id].retry
            found = classify(event.error, event.outputs, event.category, self.patterns)
            handler = matching_handler(run.error_handlers, found, event)
            if handler is not None:
                verdict = await self._remediate(run, event, handler, found)
            elif policy is None:
                verdict = DecideRetry(step_id=step.id, attempt=step.attempt, retry=False, category=found.category,
                                      pattern=found.pattern, reason=f"{found.category} error ({found.signal}); "
                                      "no retry policy and no error handler for it")
            else:
                verdict = decide_retry(step.id, step.attempt, policy, found, event.outputs, random.random())
            at = datetime.now(timezone.utc)
            run, _ = await self.runs.change(run.id, lambda r: decide(r, verdict, at))
            step = run.steps[event.step_id]
        if step.retry == "waiting":
            await self._arm(run, step.id)

    async def _remediate(self, run: Run, failed: StepFailed, index: int, found: Classification) -> DecideRetry:
        """Run the error handler's action (recorded before and after), then retry at once or not."""
        handler = run.error_handlers[index]
        step_id, attempt = failed.step_id, failed.attempt
        own = len(run.playbook.error_handlers)
        which = f"error handler {index + 1}" if index < own else f"engine error handler {index - own + 1}"
        why = f"{found.category} error ({found.signal}) -> {which}"
        at = datetime.now(timezone.utc)
        started = StepRemediationStarted(run_id=run.id, at=at, step_id=step_id, attempt=attempt, handler=index, reason=why)

        def begin(r: Run) -> list[RunEvent]:
            s = r.steps[step_id]
            return [started] if s.retry == "deciding" and s.attempt == attempt and not s.remediation else []

        run, _ = await self.runs.change(run.id, begin)
        if run.steps[step_id].remediation in ("", "running"):   # ours to run (again, after a crash)
            ctx = context_of(run)
            enter_attempt(ctx, run.started, self.secrets, self.processes)  # type: ignore[arg-type]
            try:
                result = await run_action(handler.run.action, resolve_args(handler.run.action, handler.run.args, ctx),
                                          timeout=handler.run.timeout_seconds)
                ok, outputs, error = result.ok, redact(result.outputs, ctx.used_secrets), redact(result.error, ctx.used_secrets)
            except PlaybookError as err:
                ok, outputs, error = False, {}, str(err)
            end = datetime.now(timezone.utc)
            outcome: RunEvent = (StepRemediated(run_id=run.id, at=end, step_id=step_id, attempt=attempt, handler=index,
                                               outputs=outputs) if ok else
                                 StepRemediationFailed(run_id=run.id, at=end, step_id=step_id, attempt=attempt,
                                                       handler=index, error=error))
            run, _ = await self.runs.change(
                run.id, lambda r: [outcome] if r.steps[step_id].remediation == "running" else [])
        step = run.steps[step_id]
        policy = run.specs[step_id].retry
        limit = policy.max_attempts if policy else 2
        common = dict(step_id=step_id, attempt=attempt, category=found.category, pattern=found.pattern)
        if step.remediation != "done":
            return DecideRetry(**common, retry=False, reason=f"{why}: the remediation failed")
        if handler.then == "fail":
            return DecideRetry(**common, retry=False, reason=f"{why}: remediated; the handler lets the failure stand")
        if attempt >= limit:
            return DecideRetry(**common, retry=False, exhausted=True, reason=f"{why}: remediated, but all {limit} attempts used")
        return DecideRetry(**common, retry=True, delay_seconds=0.0, reason=f"{why}: remediated; retrying at once")

    async def _arm(self, run: Run, step_id: str) -> None:
        step = run.steps[step_id]
        assert step.retry_due is not None
        due = StepScheduled(run_id=run.id, at=step.retry_due, step_id=step_id, attempt=step.attempt + 1,
                            reason=f"retry after {step.category}")
        await self.runs.store.schedule(subjects.retry_timer(run.id, step_id), due, step.retry_due,
                                       msg_id=f"retry-timer.{run.id}.{step_id}.{step.attempt + 1}")
