"""Takeover: every executor follows every lease; one nobody renewed for a whole lease is taken and its attempt
recorded interrupted, so the step runs again.

A lease is timed from when this executor saw its last record (headers only), never by
comparing clocks. Taking it is a write conditional on that very record still being the last:
if its holder renewed meanwhile, the write fails and nothing happens. The taker holds the
taken lease while it kills what the attempt left on this machine (if it ran here) and
records `StepFailed(interrupted)`, then lets it go. An executor that lost its own lease is
taken over the same way, by itself or another.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone

from nats.aio.subscription import Subscription

from services.aggregates import RunRepository
from services.domain.run.commands import InterruptStep
from services.domain.run.decider import decide
from services.errors import EngineUnavailable, PlaybookError
from services.executor.holding import Keeper
from services.executor.leftovers import Instance, alive, sweep
from services.leases import AttemptId, Lease, LeaseRecord, LeaseStore, Purpose

log = logging.getLogger(__name__)

CHECKS = 8                 # per lease: how often leases are checked for silence
AGAIN = 1 / 4              # of a lease: how soon a takeover that could not be done is tried again
SWEPT_KEPT = 64            # dead holders remembered as swept


class Takeover:
    def __init__(self, leases: LeaseStore, runs: RunRepository, keeper: Keeper, me: Instance, name: str,
                 seconds: float, record: Callable[[AttemptId, Purpose], LeaseRecord], *,
                 advancing: bool = True) -> None:
        self.leases, self.runs, self.keeper, self.me, self.name = leases, runs, keeper, me, name
        self.seconds, self.record, self.advancing = seconds, record, advancing
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()   # subject -> (seq, when seen), oldest first
        self._sub: Subscription | None = None
        self._checker: asyncio.Task[None] | None = None
        self._taking: set[asyncio.Task[None]] = set()
        self._swept: OrderedDict[tuple[int, int], asyncio.Future[list[int]]] = OrderedDict()   # dead holders

    async def start(self) -> None:
        self._sub = await self.leases.watch(self._on_record, heartbeat=min(5.0, self.seconds))
        self._checker = asyncio.create_task(self._check())

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
        if self._sub is not None:
            await self._sub.unsubscribe()
        if self._taking:
            await asyncio.wait(self._taking, timeout=self.seconds)

    async def _on_record(self, subject: str, seq: int, state: str, holder: str) -> None:
        if state == "held":
            self._see(subject, seq, time.monotonic())
        else:
            self._seen.pop(subject, None)

    def _see(self, subject: str, seq: int, when: float) -> None:
        self._seen[subject] = (seq, when)
        self._seen.move_to_end(subject)

    async def _check(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / CHECKS)
            now = time.monotonic()
            while self._seen:
                subject, (seq, when) = next(iter(self._seen.items()))
                if now - when < self.seconds:
                    break
                del self._seen[subject]
                if self.keeper.holds(subject):
                    self._see(subject, seq, now)   # ours, and renewed: we see our renewals as they land
                    continue
                task = asyncio.create_task(self._take(subject, seq))
                self._taking.add(task)
                task.add_done_callback(self._taking.discard)

    async def _take(self, subject: str, seq: int) -> None:
        try:
            last = await self.leases.read(subject)
            if last is None or last.record.state != "held":
                return
            if last.seq != seq:                    # renewed: time it from now
                self._see(subject, last.seq, time.monotonic())
                return
            sent = time.monotonic()
            taken = await self.leases.take(last, self.record(last.record.attempt_id, "takeover"))
            if taken is None:
                self._see(subject, seq, time.monotonic())
                return
            await self._interrupt(last, taken, sent)
        except Exception:
            log.exception("taking over the lease %s failed; trying again", subject)
            self._see(subject, seq, time.monotonic() - self.seconds * (1 - AGAIN))

    async def _sweep(self, holder: LeaseRecord) -> None:
        """Kill what the attempt left on this machine: if its holder is dead, all it left (once per holder:
        its guardian will have, this is in case it could not); if it lost its lease alive, the attempt's."""
        if alive(holder.pid, holder.pid_started):
            await asyncio.to_thread(sweep, self.me, holder.attempt_id.key)
            return
        dead = (holder.pid, holder.pid_started)
        if dead not in self._swept:
            self._swept[dead] = asyncio.ensure_future(asyncio.to_thread(sweep, self.me))
            while len(self._swept) > SWEPT_KEPT:
                self._swept.popitem(last=False)
        await self._swept[dead]

    async def _interrupt(self, lapsed: Lease, taken: Lease, sent: float) -> None:
        record = lapsed.record
        attempt = record.attempt_id
        holding = self.keeper.hold(attempt, taken, sent)
        recorded = False
        try:
            if self.me.same_machine(record.boot_id, record.pidns):
                await self._sweep(record)
            by = "it" if record.holder == self.name else self.name
            what = "rollback attempt" if attempt.rollback else "attempt"
            reason = (f"executor {record.holder} stopped renewing its lease on {what} {attempt.number} "
                      f"(no renewal for {self.seconds:g} s); {by} took it over")
            interrupt = InterruptStep(step_id=attempt.step_id, attempt=attempt.number, reason=reason,
                                      rollback=attempt.rollback)
            try:
                _, events = await self.runs.change(attempt.run_id, lambda run: decide(
                    run, interrupt, datetime.now(timezone.utc), advancing=self.advancing), latest=True)
            except EngineUnavailable:
                raise
            except PlaybookError as err:   # no such run (a stray lease): nothing to take over
                log.warning("lease %s names no run that can be taken over: %s", lapsed.subject, err)
                events = []
            recorded = True
            if events:
                log.warning("took over %s from executor %s: recorded it interrupted", attempt.key, record.holder)
        finally:
            if recorded:
                await self.keeper.release(holding)
            else:   # not recorded (the store did not answer): the lease lapses, and is taken over again
                self.keeper.let_lapse(holding)
