"""Runs in memory, kept current from the store: load, decide, append, retry on conflict.

Every service changes a run the same way: `change(run_id, decide)`. The decision is
made on the freshest state this process has; if another process appended meanwhile,
the store says so (optimistic concurrency), we catch up and decide again. A lock per
run keeps this process's own decisions in order. Finished and parked runs (paused, or
waiting at a gate, with nothing in flight) leave the cache: waiting costs nothing here.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from events.run import RunEvent, RunStarted
from services.errors import ConcurrencyConflict
from services.domain.run.state import Run, evolve
from services.store import EventStore

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 20


class RunRepository:
    def __init__(self, store: EventStore, capacity: int = 2000) -> None:
        self.store = store
        self.capacity = capacity
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, run_id: str, min_version: int = 0) -> Run:
        """The run, at least as new as `min_version` (the sequence of an event we hold)."""
        async with self._lock(run_id):
            return await self._current(run_id, min_version)

    async def change(
        self, run_id: str, decide: Callable[[Run], list[RunEvent]], min_version: int = 0,
    ) -> tuple[Run, list[RunEvent]]:
        """Decide on the run and append what was decided; returns the run and the new events.

        A conflict part-way through a decision keeps what was already appended (it is in
        the stream) and decides again on the caught-up run for the rest; every event this
        call appended is returned.
        """
        async with self._lock(run_id):
            run = await self._current(run_id, min_version)
            appended: list[RunEvent] = []
            for _ in range(MAX_CONFLICT_RETRIES):
                events = decide(run)
                try:
                    await self._append(run, events, appended)
                    return run, appended
                except ConcurrencyConflict:
                    await self._catch_up(run)
            raise ConcurrencyConflict(run_id)

    async def create(self, started: RunStarted) -> Run:
        """Append the event that opens a new run; ConcurrencyConflict if the run exists."""
        async with self._lock(started.run_id):
            run = Run(id=started.run_id)
            await self._append(run, [started])
            self._remember(run)
            return run

    def forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
        self._locks.pop(run_id, None)

    async def _current(self, run_id: str, min_version: int) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            run = Run(id=run_id)
            await self._catch_up(run)
            self._remember(run)
            return run
        if run.version < min_version:
            await self._catch_up(run)
        self._runs.move_to_end(run_id)
        return run

    async def _catch_up(self, run: Run) -> None:
        envelopes, last = await self.store.load(run.id, after=run.version)
        for seq, event in envelopes:
            evolve(run, event, seq)
        run.version = last

    async def _append(self, run: Run, events: list[RunEvent], appended: list[RunEvent] | None = None) -> None:
        appended = [] if appended is None else appended
        try:
            for event in events:
                (seq,) = await self.store.append(run.id, [event], expected=run.version)
                evolve(run, event, seq)
                appended.append(event)
        finally:
            if appended and (run.finished or _parked(run)):
                self.forget(run.id)

    def _remember(self, run: Run) -> None:
        if run.finished or not run.exists or _parked(run):
            return
        self._runs[run.id] = run
        while len(self._runs) > self.capacity:
            evicted, _ = self._runs.popitem(last=False)
            self._locks.pop(evicted, None)

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock


def _parked(run: Run) -> bool:
    """Waiting on people (a gate, a pause) with nothing in flight: hold nothing for it."""
    if run.status == "running":
        return run.display_status == "waiting_approval"
    return run.status == "paused" and not any(
        s.status == "running" or s.rollback == "running" for s in run.steps.values())
