"""Circuit breakers shared by every run and replica: state from the stream, OCC on change."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from events import subjects
from events.circuit import CircuitEvent, decode_circuit_event
from services.errors import ConcurrencyConflict
from services.domain.breaker import Breaker, evolve, token
from services.store import EventStore


class Breakers:
    """Breakers are cached and brought up to date with only the events since, so a busy
    target's check costs one small read however long its history."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._locks: dict[str, asyncio.Lock] = {}
        self._cache: dict[str, Breaker] = {}

    async def load(self, key: str) -> Breaker:
        """The breaker as recorded now; the object is shared: read it, do not change it."""
        breaker = self._cache.setdefault(key, Breaker(key=key))
        envelopes, last = await self.store.load_aggregate(
            f"{subjects.circuit(token(key))}.>", decode_circuit_event, after=breaker.version)
        for seq, event in envelopes:
            evolve(breaker, event, seq)
        breaker.version = max(breaker.version, last)
        return breaker

    async def change(self, key: str, decide: Callable[[Breaker], tuple[list[CircuitEvent], Any]]) -> Any:
        """Decide on the breaker's latest state and record it; returns what `decide` returned beside the events."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            for _ in range(20):
                breaker = await self.load(key)
                events, answer = decide(breaker)
                try:
                    await self.store.append_aggregate(subjects.circuit(token(key)), events, breaker.version)
                    return answer
                except ConcurrencyConflict:
                    continue
            raise ConcurrencyConflict(key)

    async def history(self, key: str) -> list[tuple[int, CircuitEvent]]:
        """Every event of one breaker, with its stream sequence, for `playbook events --circuit`."""
        envelopes, _ = await self.store.load_aggregate(f"{subjects.circuit(token(key))}.>", decode_circuit_event)
        return envelopes

    async def all(self) -> list[Breaker]:
        """Every breaker the engine has seen, for `playbook circuits`."""
        envelopes, _ = await self.store.load_aggregate(subjects.CIRCUIT_SUBJECTS, decode_circuit_event)
        breakers: dict[str, Breaker] = {}
        for seq, event in envelopes:
            evolve(breakers.setdefault(event.key, Breaker(key=event.key)), event, seq)
        return sorted(breakers.values(), key=lambda b: b.key)

