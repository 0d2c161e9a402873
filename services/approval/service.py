"""The approval service: arms each gate's deadline timer and acts when it fires.

Timers are JetStream message schedules, so a deadline that falls while every process
(NATS included) is down takes effect as soon as they are back. Waiting costs nothing
here: a gate is a timer in the stream, not a coroutine.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.run import ApprovalDeadlinePassed, ApprovalRequested, RunEvent
from services.domain.run.commands import ExpireGate
from services.domain.run.decider import decide
from services.aggregates import RunRepository
from services.runtime import OneConsumer, run_consumer
from services.settings import Settings

log = logging.getLogger(__name__)


class ApprovalService(OneConsumer):
    def __init__(self, nc: NATS, runs: RunRepository, settings: Settings) -> None:
        self.runs = runs
        self.consumer = run_consumer(
            runs, settings, "approval",
            [subjects.events_of_type("ApprovalRequested"), subjects.events_of_type("ApprovalDeadlinePassed")],
            self._handle)

    async def _handle(self, msg: Msg, event: RunEvent, seq: int) -> None:
        match event:
            case ApprovalRequested(run_id=run_id, step_id=step_id, deadline=deadline) if deadline is not None:
                fires = ApprovalDeadlinePassed(run_id=run_id, at=deadline, step_id=step_id)
                await self.runs.store.schedule(subjects.approval_timer(run_id, step_id), fires, deadline,
                                               msg_id=f"approval-timer.{run_id}.{step_id}.{seq}")
            case ApprovalDeadlinePassed(run_id=run_id, step_id=step_id):
                at = datetime.now(timezone.utc)
                await self.runs.change(run_id, lambda run: decide(run, ExpireGate(step_id), at), min_version=seq)
