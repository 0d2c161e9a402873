"""The resilience service: reacts to `StepFailed`, classifies, and retries on a durable timer.

The retry is a JetStream message schedule that stores the next `StepScheduled` in the
run's stream when due, so a backoff that ends while the engine is down is honoured
when it is back, once: the timer fires once, and a redelivered decision re-arms the
same timer (same message id) rather than adding another.
"""
from __future__ import annotations

import logging
import random
from datetime import datetime, timezone
from typing import Any, Protocol

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.playbook import RollbackAction
from events.run import (
    RunEvent, StepFailed, StepRemediated, StepRemediationFailed, StepRemediationStarted, StepScheduled,
)
from services.aggregates import RunRepository
from services.domain.capping import capped
from services.domain.classify import Classification, classify
from services.domain.retry import after_remediation, handler_name, matching_handler, retry_verdict, without_policy
from services.domain.run.commands import RecordRetryVerdict
from services.domain.run.decider import decide
from services.domain.run.state import Run
from services.runtime import OneConsumer, run_consumer
from services.settings import Settings

log = logging.getLogger(__name__)



class Perform(Protocol):
    """Runs an error handler's remediation as an attempt would: (succeeded, outputs, error), redacted.
    The executor's `Remediation`, given by the root."""

    async def __call__(self, run: Run, action: RollbackAction) -> tuple[bool, Any, str]: ...


class ResilienceService(OneConsumer):
    def __init__(self, nc: NATS, runs: RunRepository, settings: Settings, perform: Perform) -> None:
        self.runs, self.perform = runs, perform
        self.patterns = settings.error_patterns
        self.consumer = run_consumer(runs, settings, "resilience", [subjects.events_of_type("StepFailed")],
                                     self._on_failed)

    async def _on_failed(self, msg: Msg, event: RunEvent, seq: int) -> None:
        if not isinstance(event, StepFailed):
            return
        run = await self.runs.get(event.run_id, min_version=seq)
        step = run.steps.get(event.step_id)
        if step is None or step.attempt.number != event.attempt or not step.retry.status:
            return
        found = classify(event.error, event.outputs, event.category, self.patterns)
        if step.retry.status == "deciding":
            policy = run.specs[step.id].retry
            handler = matching_handler(run.error_handlers, found, event)
            if handler is not None:
                verdict = await self._remediate(run, event, handler, found)
            elif policy is None:
                verdict = without_policy(step.id, step.attempt.number, found)
            else:
                verdict = retry_verdict(step.id, step.attempt.number, policy, found, event.outputs, random.random(),
                                        step.retry.first)
            at = datetime.now(timezone.utc)
            run, _ = await self.runs.change(run.id, lambda r: decide(r, verdict, at))
            step = run.steps[event.step_id]
        if step.retry.status == "waiting":
            await self._arm(run, step.id, found.category)

    async def _remediate(self, run: Run, failed: StepFailed, index: int, found: Classification) -> RecordRetryVerdict:
        """Run the error handler's action (recorded before and after), then retry at once or not."""
        handler = run.error_handlers[index]
        step_id, attempt = failed.step_id, failed.attempt
        why = f"{found.category} error ({found.signal}) -> {handler_name(index, len(run.playbook.error_handlers))}"
        at = datetime.now(timezone.utc)
        started = StepRemediationStarted(run_id=run.id, at=at, step_id=step_id, attempt=attempt, handler=index,
                                         reason=why)

        def begin(r: Run) -> list[RunEvent]:
            s = r.steps[step_id]
            fresh = s.retry.status == "deciding" and s.attempt.number == attempt and not s.retry.remediation
            return [started] if fresh else []

        run, _ = await self.runs.change(run.id, begin)
        step = run.steps[step_id]
        # Ours to run (again, after a crash), unless the run was cancelled: a cancel never retries.
        if step.retry.status == "deciding" and step.retry.remediation == "running":
            ok, outputs, error = await self.perform(run, handler.run)
            outputs, error, note = capped(outputs, error, self.runs.store.max_event_bytes)
            end = datetime.now(timezone.utc)
            outcome: RunEvent = (StepRemediated(run_id=run.id, at=end, step_id=step_id, attempt=attempt, handler=index,
                                                outputs=outputs, note=note) if ok else
                                 StepRemediationFailed(run_id=run.id, at=end, step_id=step_id, attempt=attempt,
                                                       handler=index, error=error))
            run, _ = await self.runs.change(
                run.id, lambda r: [outcome] if r.steps[step_id].retry.remediation == "running" else [])
        remediated = run.steps[step_id].retry.remediation == "done"
        return after_remediation(step_id, attempt, run.specs[step_id].retry, handler, found, why, remediated,
                                 run.steps[step_id].retry.first)

    async def _arm(self, run: Run, step_id: str, category: str) -> None:
        """The timer that schedules the next attempt; its reason names the failure as classified (the executor's
        own category is often `unknown`)."""
        step = run.steps[step_id]
        assert step.retry.due is not None
        attempt = step.attempt.number + 1
        due = StepScheduled(run_id=run.id, at=step.retry.due, step_id=step_id, attempt=attempt,
                            reason=f"retry after {'an' if category[:1] in 'aeiou' else 'a'} {category} error")
        await self.runs.store.schedule(subjects.retry_timer(run.id, step_id), due, step.retry.due,
                                       msg_id=f"retry-timer.{run.id}.{step_id}.{attempt}")
