"""The resilience service: reacts to `StepFailed`, classifies, and retries on a durable timer.

The retry is a JetStream message schedule that stores the next `StepScheduled` in the
run's stream when due, so a backoff that ends while the engine is down is honoured
when it is back, once: the timer fires once, and a redelivered decision re-arms the
same timer (same message id) rather than adding another.
"""
from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import yaml

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.run import RunEvent, StepFailed, StepScheduled
from services.errors import PlaybookError
from services.resilience.classify import Pattern, classify
from services.resilience.policy import decide_retry
from services.run.decider import decide
from services.run.repository import RunRepository
from services.run.state import Run
from services.runtime import Consumer

log = logging.getLogger(__name__)


def configured_patterns(environ: Mapping[str, str] | None = None) -> list[Pattern]:
    """Error patterns from the engine's configuration: `$PLAYBOOK_ERROR_PATTERNS`, a YAML list
    of `{regex, category}`, tried before the built-in table. A bad file stops the service at start."""
    path = (os.environ if environ is None else environ).get("PLAYBOOK_ERROR_PATTERNS")
    if not path:
        return []
    try:
        return msgspec.convert(yaml.safe_load(Path(path).read_text()) or [], list[Pattern])
    except (OSError, yaml.YAMLError, msgspec.ValidationError) as err:
        raise PlaybookError(f"{path}: cannot read the error patterns: {err}") from err


class ResilienceService:
    def __init__(self, nc: NATS, runs: RunRepository, *, ack_wait: float = 30.0) -> None:
        self.runs = runs
        self.patterns = configured_patterns()
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
            assert policy is not None
            found = classify(event.error, event.outputs, event.category, self.patterns)
            verdict = decide_retry(step.id, step.attempt, policy, found, event.outputs, random.random())
            at = datetime.now(timezone.utc)
            run, _ = await self.runs.change(run.id, lambda r: decide(r, verdict, at))
            step = run.steps[event.step_id]
        if step.retry == "waiting":
            await self._arm(run, step.id)

    async def _arm(self, run: Run, step_id: str) -> None:
        step = run.steps[step_id]
        assert step.retry_due is not None
        due = StepScheduled(run_id=run.id, at=step.retry_due, step_id=step_id, attempt=step.attempt + 1,
                            reason=f"retry after {step.category}")
        await self.runs.store.schedule(subjects.retry_timer(run.id, step_id), due, step.retry_due,
                                       msg_id=f"retry-timer.{run.id}.{step_id}.{step.attempt + 1}")
