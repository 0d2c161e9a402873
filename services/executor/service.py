"""The executor service: takes `StepScheduled` from a shared consumer and runs the attempt under a lease.

An attempt runs at most once at a time, anywhere: the executor first claims the attempt's
lease (a conditional write in PB_LEASES), then appends `StepStarted` with optimistic
concurrency, before any side effect, and acknowledges the message. It renews the lease
while the attempt runs and stops the attempt if it cannot (`holding`); any executor that
sees a lease lapse takes it over and records the attempt interrupted, so the step runs
again (`takeover`). The outcome, and whatever it makes ready next, is appended in one
decision, capped to fit the store. Every process a step starts dies with this process
(`guardian`), and a process starting an executor kills what dead ones left on this machine
(`leftovers`, from `app.root.serve`, before it waits for NATS). Cancel requests reach in-flight
attempts through a live subscription. docs/execution.md states the guarantee.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from events import subjects
from events.codec import checked_event
from events.run import MessageAbandoned, RunEvent, StepRollbackScheduled, StepScheduled
from services.aggregates import BreakerRepository, RunRepository
from services.domain.capping import capped
from services.domain.run.commands import BeginStep, FinishStep, InterruptStep, RunCommand
from services.domain.run.decider import decide
from services.domain.run.state import Run
from services.errors import EngineUnavailable, TooLarge
from services.executor.actions import close_http_session
from services.executor.holding import Holding, Keeper
from services.executor.leftovers import this_process
from services.executor.processes import GUARDIAN
from services.executor.scope import redacted
from services.executor.takeover import Takeover
from services.executor.work import Outcome, Work, now
from services.leases import AttemptId, LeaseRecord, LeaseStore, Purpose
from services.named_consumers import named_jetstream
from services.runtime import ERROR_CHARS, MAX_RETRY_DELAY, run_consumer, until_recorded
from services.settings import Settings

log = logging.getLogger(__name__)
RECORD_RETRY = 0.5        # seconds between tries to record an outcome, while the lease is held
CANCELS_KEPT = 1000   # cancel requests remembered for attempts that start just after one


@dataclass(eq=False)
class Running:
    """An attempt in flight here: its lease, its task, and why its work was stopped, if it was."""

    attempt: AttemptId
    holding: Holding
    task: asyncio.Task[None] | None = None
    stopped: str = ""       # "cancelled" (its run), "lost" (its lease), "stopping" (this executor)
    ended: bool = False     # its work is over, its outcome being recorded
    started_seq: int = 0    # its StepStarted's stream sequence

    def stop(self, why: str) -> None:
        """Stop its work. Once that is over, only this executor's own stop cuts the recording of its outcome
        short: a lapsed lease or a cancel would drop what finished, and the step would run again."""
        if self.stopped or self.task is None or (self.ended and why != "stopping"):
            return
        self.stopped = why
        self.task.cancel()


class Executor:
    """`own_login`: it runs as `python -m services.executor` under pb-executor, which may write only its steps' events
    (the run service advances the run after them) and make no stream (the engine's services make PB_LEASES)."""

    def __init__(self, nc: NATS, runs: RunRepository, breakers: BreakerRepository, settings: Settings, *,
                 name: str | None = None, concurrency: int = 1000, own_login: bool = False) -> None:
        self.nc, self.runs = nc, runs
        self.advancing = not own_login
        self.me = this_process()
        self.name = name or f"{self.me.host}-{self.me.pid}"
        self.seconds, self.replicas = settings.lease_seconds, settings.stream_replicas
        self.max_tries = settings.max_deliver      # to record an outcome, as a message is tried
        work = [subjects.events_of_type("StepScheduled"), subjects.events_of_type("StepRollbackScheduled")]
        # A delivery is ours until we have claimed and started it, which takes moments: a lease at most.
        self.consumer = run_consumer(runs, settings, "executor", work, self._on_scheduled,
                                     ack_wait=min(settings.ack_wait, self.seconds), max_ack_pending=concurrency)
        self.work = Work(nc, breakers, settings)
        self.leases = LeaseStore(nc)
        self.keeper = Keeper(self.leases, self.seconds, GUARDIAN)
        self.takeover = Takeover(self.leases, runs, self.keeper, self.me, self.name, self.seconds, self._lease_record,
                                 advancing=self.advancing)
        self._room = asyncio.Semaphore(concurrency)
        self._running: dict[str, Running] = {}            # by lease subject
        # Runs cancelled lately, with the stream sequence of the request, for late starters: a request
        # older than the attempt's start (a retried run's) does not stop it.
        self._cancelled: OrderedDict[str, int] = OrderedDict()
        self._cancel_sub: Any = None

    async def start(self) -> None:
        if self.advancing:      # the engine's login: it may make the stream (the engine's set-up made it already)
            await self.leases.ensure_stream(self.replicas)
        self.keeper.start()
        self._cancel_sub = await named_jetstream(self.nc).subscribe(
            subjects.events_of_type("RunCancelRequested"), ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW, cb=self._on_cancel_requested,
        )
        await self.takeover.start()
        await self.consumer.start()
        level, isolation = self.work.processes.isolation()
        log.info("executor %s ready (lease %g s)", self.name, self.seconds)
        log.log(level, "executor %s: %s", self.name, isolation)
        if exposed := self.work.secrets.open_to_others():
            log.warning("executor %s: %s", self.name, exposed)

    async def stop(self, grace: float = 10.0) -> None:
        """Claim nothing more; let attempts finish for `grace` seconds, then stop them, recorded interrupted."""
        if self._cancel_sub is not None:
            await self._cancel_sub.unsubscribe()
        await self.consumer.stop(grace)
        await self.takeover.stop()
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for running in list(self._running.values()):
            running.stop("stopping")
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        await self.keeper.stop()
        await close_http_session()

    async def _on_scheduled(self, msg: Msg, event: RunEvent, seq: int) -> None:
        if not isinstance(event, (StepScheduled, StepRollbackScheduled)):
            return
        attempt = AttemptId(event.run_id, event.step_id, event.attempt, isinstance(event, StepRollbackScheduled))
        if attempt.subject in self._running:
            return   # ours already: the delivery came again before our acknowledgement landed
        run = await self.runs.get(event.run_id, min_version=seq)
        if not decide(run, self._begin(attempt, seq), now(), advancing=self.advancing):
            await self._interrupt_unleased(run, attempt)
            return
        await self._room.acquire()
        try:
            claimed = await self._claim(attempt, seq)
        except BaseException:
            self._room.release()
            raise
        if claimed is None:
            self._room.release()
            return
        run, running = claimed
        self._running[attempt.subject] = running
        running.task = asyncio.create_task(self._execute(run, running))   # it gives the room back
        if self._cancelled.get(run.id, 0) > run.version:
            running.stop("cancelled")

    async def _claim(self, attempt: AttemptId, seq: int) -> tuple[Run, Running] | None:
        """The attempt's lease, then its StepStarted: the attempt is ours to run; None if it is not."""
        sent = time.monotonic()
        lease = await self.leases.claim(attempt, self._lease_record(attempt, "run"))
        if lease is None:
            return None   # someone holds it: theirs to run, or to hand over when it lapses
        running = Running(attempt, self.keeper.hold(attempt, lease, sent, self._on_lost))
        try:
            begin = self._begin(attempt, seq, lease.seq)
            run, events = await self.runs.change(
                attempt.run_id, lambda r: decide(r, begin, now(), advancing=self.advancing), min_version=seq)
        except BaseException:
            await self.keeper.release(running.holding)
            raise
        if not events:
            await self.keeper.release(running.holding)
            return None
        running.started_seq = run.version
        return run, running

    def _begin(self, attempt: AttemptId, seq: int, lease: int = 0) -> BeginStep:
        me = self.me
        return BeginStep(step_id=attempt.step_id, attempt=attempt.number, scheduled_seq=seq, executor=self.name,
                         rollback=attempt.rollback, lease=lease, host=me.host, boot_id=me.boot_id, pid=me.pid,
                         pid_started=me.started)

    def _lease_record(self, attempt: AttemptId, purpose: Purpose) -> LeaseRecord:
        me = self.me
        return LeaseRecord(state="held", holder=self.name, purpose=purpose, run_id=attempt.run_id,
                           step_id=attempt.step_id, attempt=attempt.number, rollback=attempt.rollback,
                           seconds=self.seconds, host=me.host, boot_id=me.boot_id, pidns=me.pidns, pid=me.pid,
                           pid_started=me.started)

    async def _execute(self, run: Run, running: Running) -> None:
        attempt = running.attempt
        began = time.perf_counter()
        try:
            try:
                outcome: Outcome | None = await self.work(run, attempt)
            except asyncio.CancelledError:
                if not running.stopped:
                    raise
                outcome = None
            except Exception as err:  # noqa: BLE001 - an engine fault: the step fails (steerable), not stuck running
                log.error("%s failed unexpectedly\n%s", attempt.key, redacted(traceback.format_exc()))
                outcome = Outcome(_no_outputs(attempt), f"the engine failed while running this step "
                                  f"({type(err).__name__}); the executor's log has the details", "unknown")
            running.ended = True
            if not running.stopped and time.monotonic() >= running.holding.deadline:
                # Learnt only after the lease's deadline (a busy loop), when the guardian may have killed the
                # attempt: what was seen is not the step's own outcome. Recorded by whoever takes the lease over.
                running.stopped = "lost"
            duration = (time.perf_counter() - began) * 1000
            if running.stopped == "lost":
                return   # not ours to record any more: whoever takes the lease over records it interrupted
            if running.stopped == "stopping" and outcome is None:
                await self._recorded(running, InterruptStep(
                    step_id=attempt.step_id, attempt=attempt.number, rollback=attempt.rollback,
                    reason=f"executor {self.name} stopped while running it"))
                return
            outcome = outcome or Outcome(_no_outputs(attempt), "cancelled while running", "cancelled")
            await self._recorded(running, self._fitted(FinishStep(
                step_id=attempt.step_id, attempt=attempt.number, outputs=outcome.outputs, duration_ms=duration,
                error=outcome.error, category=outcome.category, rollback=attempt.rollback)))
        finally:
            self._running.pop(attempt.subject, None)
            self._room.release()

    def _fitted(self, finish: FinishStep) -> FinishStep:
        outputs, error, note = capped(finish.outputs, finish.error, self.runs.store.max_event_bytes)
        return dataclasses.replace(finish, outputs=outputs, error=error, note=note)

    async def _recorded(self, running: Running, command: RunCommand) -> None:
        """Record, trying again while the lease is ours; then let the lease go. An outcome that cannot be stored
        is recorded as a `resource` failure. An attempt that ended is recorded even after its lease lapsed (NATS
        lost its quorum for longer than a lease): the decider refuses it if a taker recorded it interrupted first,
        and dropping it would run a step that finished again; an interrupt is not, leaving the lease to a taker."""
        ended = isinstance(command, FinishStep)
        if ended:
            self.keeper.finishing.add(running.holding.lease.subject)
        try:
            await self._record(running, command, ended)
        finally:
            self.keeper.finishing.discard(running.holding.lease.subject)

    async def _record(self, running: Running, command: RunCommand, ended: bool) -> None:
        attempt = running.attempt
        unavailable, until = False, "" if ended else " while its lease holds"
        failures = 0
        while ended or not running.holding.lost:
            try:
                try:
                    await self._decide(attempt.run_id, command)
                except TooLarge as err:
                    if not isinstance(command, FinishStep):
                        raise
                    log.error("%s: its outcome cannot be recorded: %s", attempt.key, err)
                    command = dataclasses.replace(command, outputs=_no_outputs(attempt), note="",
                                                  category="resource",
                                                  error=f"the step's outcome could not be recorded: {err}")
                    continue
            except EngineUnavailable as err:   # a full store, a lost leader: the outcome is kept here meanwhile
                log.log(logging.DEBUG if unavailable else logging.WARNING,
                        "%s: could not record its outcome: %s; trying again%s", attempt.key, err, until)
                unavailable = True
                await asyncio.sleep(RECORD_RETRY)
                continue
            except Exception as err:
                failures += 1
                if ended and failures >= self.max_tries:
                    log.exception("%s: could not record its outcome %d times; giving it up", attempt.key, failures)
                    if await self._give_up(running, command, failures, err):
                        return
                log.exception("%s: could not record its outcome; trying again%s", attempt.key, until)
                await asyncio.sleep(min(RECORD_RETRY * 2 ** (failures - 1), MAX_RETRY_DELAY))
                continue
            await self.keeper.release(running.holding)
            return

    async def _give_up(self, running: Running, command: RunCommand, tries: int, err: Exception) -> bool:
        """An outcome the engine fails to record every time (a bug) is given up on the record, like a message
        (services/domain/run/abandoned.py then fails the step as `engine`), and its lease let go. False when
        even that record cannot be written: the lease is kept, and recording goes on being tried."""
        attempt = running.attempt
        said = ("failed: " + command.error[:200] if command.error else "succeeded") \
            if isinstance(command, FinishStep) else "unknown"
        started = "StepRollbackStarted" if attempt.rollback else "StepStarted"
        record = MessageAbandoned(
            run_id=attempt.run_id, at=now(), consumer=self.consumer.name, seq=running.started_seq,
            subject=subjects.run_event(attempt.run_id, started), deliveries=tries, step_id=attempt.step_id,
            attempt=attempt.number,
            error=f"its outcome ({said}) could not be recorded: {type(err).__name__}: {err}"[:ERROR_CHARS])
        try:
            await until_recorded(lambda: self.runs.change(attempt.run_id, lambda run: [record] if run.exists else []),
                                 f"{attempt.key}: giving up its outcome")
        except Exception:
            log.exception("%s: could not record that its outcome was given up", attempt.key)
            return False
        await self.keeper.release(running.holding)
        return True

    async def _decide(self, run_id: str, command: RunCommand) -> list[RunEvent]:
        _, events = await self.runs.change(run_id, lambda run: decide(run, command, now(), advancing=self.advancing))
        return events

    async def _interrupt_unleased(self, run: Run, attempt: AttemptId) -> None:
        """A start from before leases, delivered again: as then, its holder is gone."""
        step = run.steps.get(attempt.step_id)
        if step is None:
            return
        state, number, lease, holder = ((step.rollback.status, step.rollback.attempt, step.rollback.lease,
                                         step.rollback.executor) if attempt.rollback else
                                        (step.status, step.attempt.number, step.attempt.lease, step.attempt.executor))
        if state == "running" and number == attempt.number and not lease and holder != self.name:
            interrupt = InterruptStep(step_id=attempt.step_id, attempt=attempt.number, rollback=attempt.rollback,
                                      reason=f"executor {holder} stopped while running the step")
            await self._decide(run.id, interrupt)

    def _on_lost(self, holding: Holding, why: str) -> None:
        running = self._running.get(holding.lease.subject)
        if running is not None:
            running.stop("lost")

    async def _on_cancel_requested(self, msg: Msg) -> None:
        try:
            run_id = checked_event(msg.subject, msg.data, msg.headers).run_id
        except Exception:  # noqa: BLE001 - a bad message must not stop the watcher
            log.error("dropping undecodable message on %s", msg.subject)
            return
        self._cancelled[run_id] = msg.metadata.sequence.stream
        self._cancelled.move_to_end(run_id)
        while len(self._cancelled) > CANCELS_KEPT:
            self._cancelled.popitem(last=False)
        for running in list(self._running.values()):
            if running.attempt.run_id == run_id:
                running.stop("cancelled")


def _no_outputs(attempt: AttemptId) -> list[Any] | dict[str, Any]:
    """An attempt's outputs when it produced none: a rollback's are a list (one per action), a step's a mapping."""
    return [] if attempt.rollback else {}
