"""The executor service: takes `StepScheduled` from a shared consumer and runs the step.

`StepStarted` is appended (with optimistic concurrency) before any side effect, so an
attempt starts once however many executors race for it. The outcome, and whatever it
makes ready next, is appended in the same decision. Cancel requests reach in-flight
steps through a live subscription and kill their processes.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from datetime import datetime, timezone

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from events import subjects
from events.codec import decode_event
from events.run import RunEvent, StepScheduled, StepStarted
from services.errors import PlaybookError
from services.executor.actions import close_http_session, run_action
from services.executor.step import export_outputs, failed_validation, resolve_args
from services.playbook.interpolate import Context, redact
from services.run.decider import BeginStep, FinishStep, context_of, decide
from services.run.repository import RunRepository
from services.run.state import Run
from services.runtime import Consumer, LeaveUnacknowledged
from services.secrets import SecretSource, allowed_environment

log = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(timezone.utc)


class Executor:
    def __init__(self, nc: NATS, runs: RunRepository, *, name: str | None = None,
                 ack_wait: float = 30.0, concurrency: int = 1000) -> None:
        self.nc, self.runs = nc, runs
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.consumer = Consumer(nc, runs.store.stream, "executor", [subjects.events_of_type("StepScheduled")],
                                 self._on_scheduled, ack_wait=ack_wait, max_ack_pending=concurrency)
        self._running: dict[str, set[asyncio.Task[object]]] = {}
        self._attempts: set[tuple[str, str]] = set()   # (run, step) executing in this process
        self._cancelled: deque[str] = deque(maxlen=1000)  # runs cancelled lately, for late starters
        self._cancel_sub = None
        self.secrets = SecretSource()

    async def start(self) -> None:
        js = self.nc.jetstream()
        self._cancel_sub = await js.subscribe(
            subjects.events_of_type("RunCancelRequested"), ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW, cb=self._on_cancel_requested,
        )
        await self.consumer.start()
        log.info("executor %s ready", self.name)

    async def stop(self, grace: float = 10.0) -> None:
        if self._cancel_sub is not None:
            await self._cancel_sub.unsubscribe()
        await self.consumer.stop(grace)
        await close_http_session()

    async def _on_scheduled(self, msg: Msg, event: RunEvent, seq: int) -> None:
        if not isinstance(event, StepScheduled):
            return
        if (event.run_id, event.step_id) in self._attempts:
            raise LeaveUnacknowledged   # our own work came back (a missed heartbeat): it is still ours
        # The scheduled message is acked only when its step ends, so if it reaches us
        # while the attempt runs elsewhere, its holder is gone. (The delivery count is
        # no proof: a nats-server killed mid-run may forget it.)
        begin = BeginStep(step_id=event.step_id, attempt=event.attempt, scheduled_seq=seq,
                          executor=self.name, redelivered=True)
        run, events = await self.runs.change(event.run_id, lambda r: decide(r, begin, now()), min_version=seq)
        if not any(isinstance(e, StepStarted) for e in events):
            return
        self._attempts.add((event.run_id, event.step_id))
        try:
            outcome = await self._execute(run, event.step_id, event.attempt)
            await self.runs.change(event.run_id, lambda r: decide(r, outcome, now()))
        finally:
            self._attempts.discard((event.run_id, event.step_id))

    async def _execute(self, run: Run, step_id: str, attempt: int) -> FinishStep:
        spec = run.specs[step_id]
        ctx = context_of(run)
        ctx.secrets, ctx.env = self.secrets.get, allowed_environment()
        began = time.perf_counter()

        def finish(outputs: dict, error: str = "", category: str = "unknown") -> FinishStep:
            outputs, error = redact(outputs, ctx.used_secrets), redact(error, ctx.used_secrets)
            return FinishStep(step_id=step_id, attempt=attempt, outputs=outputs,
                              duration_ms=(time.perf_counter() - began) * 1000, error=error, category=category)

        try:
            args = resolve_args(spec, ctx)
        except PlaybookError as err:
            return finish({}, str(err), "configuration")
        task = asyncio.ensure_future(run_action(spec.action, args, timeout=spec.timeout_seconds))
        tasks = self._running.setdefault(run.id, set())
        tasks.add(task)
        if run.id in self._cancelled:
            task.cancel()
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():   # we are shutting down: the action dies, nothing is recorded
                task.cancel()
                raise
            return finish({}, "cancelled while running", "cancelled")
        finally:
            tasks.discard(task)
            if not tasks:
                self._running.pop(run.id, None)
        if not result.ok:
            return finish(result.outputs, result.error, result.category or "unknown")
        try:
            outputs = export_outputs(spec.outputs, result.outputs)
        except PlaybookError as err:
            return finish(result.outputs, str(err), "configuration")
        ctx.local = outputs
        if problem := failed_validation(spec.validations, ctx):
            return finish(outputs, problem, "validation")
        return finish(outputs)

    async def _on_cancel_requested(self, msg: Msg) -> None:
        try:
            run_id = decode_event(msg.data).run_id
        except Exception:  # noqa: BLE001 - a bad message must not stop the watcher
            log.error("dropping undecodable message on %s", msg.subject)
            return
        self._cancelled.append(run_id)
        for task in list(self._running.get(run_id, ())):
            task.cancel()
