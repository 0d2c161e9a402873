"""The executor service: takes `StepScheduled` from a shared consumer and runs the step.

`StepStarted` is appended (with optimistic concurrency) before any side effect, so an
attempt starts once however many executors race for it. The outcome, and whatever it
makes ready next, is appended in the same decision. Cancel requests reach in-flight
steps through a live subscription and kill their processes.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from events import subjects
from events.codec import decode_event
from events.playbook import circuit_of
from events.run import ErrorCategory, RunEvent, StepRollbackScheduled, StepRollbackStarted, StepScheduled, StepStarted
from services.errors import EventTooLarge, PlaybookError
from services.executor.actions import ActionResult, close_http_session, run_action
from services.executor.actions.base import live_output
from services.executor.live_output import LiveOutput
from services.aggregates import BreakerRepository, RunRepository
from services.domain.breaker import after_call, before_call, circuit_key
from services.domain.capping import capped
from services.domain.classify import classify
from services.domain.run.commands import BeginStep, FinishStep
from services.domain.run.decider import context_of, decide
from services.domain.run.state import Run
from services.executor.processes import ProcessRules
from services.executor.scope import enter_attempt
from services.executor.validators import run_validators
from services.playbook.arguments import export_outputs, failed_validation, resolve_args
from services.playbook.interpolate import Context
from services.runtime import LeaveUnacknowledged, run_consumer
from services.secrets import redact
from services.settings import Settings

log = logging.getLogger(__name__)


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


class Executor:
    def __init__(self, nc: NATS, runs: RunRepository, breakers: BreakerRepository, settings: Settings, *,
                 name: str | None = None, concurrency: int = 1000) -> None:
        self.nc, self.runs, self.settings = nc, runs, settings
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        work = [subjects.events_of_type("StepScheduled"), subjects.events_of_type("StepRollbackScheduled")]
        self.consumer = run_consumer(runs, settings, "executor", work, self._on_scheduled,
                                     max_ack_pending=concurrency)
        self._running: dict[str, set[asyncio.Task[object]]] = {}
        self._attempts: set[tuple[str, str]] = set()   # (run, step) executing in this process
        self._cancelled: deque[str] = deque(maxlen=1000)  # runs cancelled lately, for late starters
        self._cancel_sub: Any = None   # the push subscription to cancel requests, once started
        self.processes = ProcessRules.from_environ(settings.environ)
        self.breakers = breakers
        self.patterns = settings.error_patterns

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
        if not isinstance(event, (StepScheduled, StepRollbackScheduled)):
            return
        rollback = isinstance(event, StepRollbackScheduled)
        key = (event.run_id, event.step_id)
        if key in self._attempts:
            raise LeaveUnacknowledged   # our own work came back (a missed heartbeat): it is still ours
        # The scheduled message is acked only when its step ends, so if it reaches us
        # while the attempt runs elsewhere, its holder is gone. (The delivery count is
        # no proof: a nats-server killed mid-run may forget it.)
        begin = BeginStep(step_id=event.step_id, attempt=event.attempt, scheduled_seq=seq,
                          executor=self.name, redelivered=True, rollback=rollback)
        run, events = await self.runs.change(event.run_id, lambda r: decide(r, begin, now()), min_version=seq)
        if not any(isinstance(e, (StepStarted, StepRollbackStarted)) for e in events):
            return
        self._attempts.add(key)
        try:
            began = time.perf_counter()
            work = self._undo(run, event.step_id) if rollback else self._do(run, event.step_id)
            outcome = await self._tracked(run.id, work)
            await self._record(run.id, FinishStep(
                step_id=event.step_id, attempt=event.attempt, outputs=outcome.outputs,
                duration_ms=(time.perf_counter() - began) * 1000, error=outcome.error, category=outcome.category,
                rollback=rollback))
        finally:
            self._attempts.discard(key)

    async def _record(self, run_id: str, finish: FinishStep) -> None:
        """The outcome, capped to fit the event store; if it still cannot be stored, a `resource` failure."""
        outputs, error, note = capped(finish.outputs, finish.error, self.runs.store.max_event_bytes)
        fitted = dataclasses.replace(finish, outputs=outputs, error=error, note=note)
        try:
            await self.runs.change(run_id, lambda r: decide(r, fitted, now()))
        except EventTooLarge as err:
            log.error("step %s of run %s: its outcome cannot be recorded: %s", finish.step_id, run_id, err)
            failed = dataclasses.replace(finish, outputs=[] if finish.rollback else {}, category="resource",
                                         error=f"the step's outcome could not be recorded: {err}", note="")
            await self.runs.change(run_id, lambda r: decide(r, failed, now()))

    async def _tracked(self, run_id: str, work: Coroutine[Any, Any, Outcome]) -> Outcome:
        """Run the work where a cancel of its run can reach it."""
        task = asyncio.ensure_future(work)
        tasks = self._running.setdefault(run_id, set())
        tasks.add(task)
        if run_id in self._cancelled:
            task.cancel()
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():   # we are shutting down: the work dies, nothing is recorded
                task.cancel()
                raise
            return Outcome({}, "cancelled while running", "cancelled")
        finally:
            tasks.discard(task)
            if not tasks:
                self._running.pop(run_id, None)

    def _context(self, run: Run) -> Context:
        """Call it inside the attempt's own task: the scope it opens (secrets, process rules) lasts as long."""
        ctx = context_of(run)
        assert run.started is not None
        enter_attempt(ctx, run.started, self.settings.secrets, self.processes)
        return ctx

    async def _do(self, run: Run, step_id: str) -> Outcome:
        """A step's attempt: validators, the action, exported outputs, validations."""
        spec = run.specs[step_id]
        ctx = self._context(run)
        try:
            args = resolve_args(spec.action, spec.args, ctx)
            if problem := await run_validators(spec.validators, ctx):
                return Outcome({}, problem, "validation").redacted(ctx)
        except PlaybookError as err:
            return Outcome({}, str(err), "configuration").redacted(ctx)
        live = LiveOutput(self.nc, run.id, step_id, run.steps[step_id].attempt.number, ctx.used_secrets)
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
        denial = await self.breakers.change_answering(key, lambda b: before_call(b, circuit, run.id, step_id, now()))
        if denial:
            outputs = {}
            if circuit.on_open == "wait" and (breaker := await self.breakers.get(key)).until is not None:
                outputs["retry_after"] = max(0.0, (breaker.until - now()).total_seconds())
            return ActionResult(ok=False, error=denial, category="dependency", outputs=outputs)
        result = await run_action(spec.action, args, timeout=spec.timeout_seconds)
        failure = None if result.ok else classify(result.error, result.outputs, result.category, self.patterns).category
        await self.breakers.change(
            key, lambda b: after_call(b, circuit, run.id, step_id, now(), failure, result.error))
        return result

    async def _undo(self, run: Run, step_id: str) -> Outcome:
        """A step's rollback actions, in order, with the step's own outputs in reach."""
        ctx = self._context(run)
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

    async def _on_cancel_requested(self, msg: Msg) -> None:
        try:
            run_id = decode_event(msg.data).run_id
        except Exception:  # noqa: BLE001 - a bad message must not stop the watcher
            log.error("dropping undecodable message on %s", msg.subject)
            return
        self._cancelled.append(run_id)
        for task in list(self._running.get(run_id, ())):
            task.cancel()
