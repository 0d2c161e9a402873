"""Aggregates in memory, kept current from the store: load, decide, append, retry on conflict.

Every service changes an aggregate (a run, a circuit breaker) the same way:
`change(key, decision)`. The decision is made on the freshest state this process has; if
another process appended meanwhile, the store says so (optimistic concurrency), we
catch up and decide again. A decision that refuses appends nothing, so no conflict can
tell us we were behind: before a refusal stands, we catch up, and decide again if that
brought anything new. A lock per key keeps this process's own decisions in order.
The cache is bounded (least recently used goes first) and holds only what its kind says
is worth keeping; a lock lives only while someone holds or waits for it.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import msgspec

from services.errors import CommandRejected, ConcurrencyConflict
from services.store import EventStore

# A decision lost to another writer is made again on what it appended, for this long: a replica whose burst of
# changes to one key (twenty executors' calls to one breaker) keeps winning wins only until its queue is empty.
CONFLICT_SECONDS = 10.0


class Versioned(Protocol):
    version: int       # stream sequence of the last event applied; 0 = nothing yet


S = TypeVar("S", bound=Versioned)
E = TypeVar("E", bound=msgspec.Struct)
A = TypeVar("A")
Envelopes = list[tuple[int, E]]


@dataclass(frozen=True, slots=True)
class Aggregate(Generic[S, E]):
    """How one kind of aggregate lives in the stream and folds into its state."""

    prefix: Callable[[str], str]                # key -> subject prefix, e.g. `pb.run.<id>`
    decode: Callable[[bytes], E]
    new: Callable[[str], S]                     # the state of a key with no events
    evolve: Callable[[S, E, int], object]       # apply one event, stored at that sequence, in place
    keep: Callable[[S], bool] = lambda state: True          # worth caching (else loaded when asked)
    always_catch_up: bool = False               # read what others appended before every decision
    obsoleted_timer: Callable[[E], str | None] = lambda event: None   # the timer an event cancels
    stored: Callable[[E], E] = lambda event: event   # what goes into the stream of an event folded as it is
    # (subject, data, why) -> what an undecodable one folds as
    unreadable: Callable[[str, bytes, str], E] | None = None


class Repository(Generic[S, E]):
    """`prepare`: what loaded events need before they fold (runs: their pinned playbook resolved)."""

    def __init__(self, store: EventStore, kind: Aggregate[S, E], capacity: int = 2000,
                 prepare: Callable[[Envelopes[E]], Awaitable[Envelopes[E]]] | None = None) -> None:
        self.store, self.kind, self.capacity, self.prepare = store, kind, capacity, prepare
        self._cache: OrderedDict[str, S] = OrderedDict()
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}   # key -> (lock, [holders and waiters])

    async def get(self, key: str, min_version: int = 0, *, latest: bool = False) -> S:
        """The state, at least as new as `min_version` (the sequence of an event we hold);
        `latest`: with everything the store holds now."""
        async with self._locked(key):
            return await self._current(key, min_version, latest)

    async def change(self, key: str, decision: Callable[[S], list[E]], min_version: int = 0, *,
                     latest: bool = False) -> tuple[S, list[E]]:
        """Decide on the state and append what was decided; returns the state and the new events.

        A conflict part-way through a decision keeps what was already appended (it is in
        the stream) and decides again on the caught-up state for the rest; every event
        this call appended is returned. If that decision refuses, the call stands on what it
        appended (a command refused by its own events is not refused). `latest`: catch up
        before deciding (for a decision whose "nothing to do" must not come from a stale state).
        """
        state, appended, _ = await self._change(key, lambda s: (decision(s), None), min_version, latest)
        return state, appended

    async def change_answering(self, key: str, decision: Callable[[S], tuple[list[E], A]]) -> A:
        """As `change`, for a decision that also answers (a breaker's refusal): the answer of the
        decision whose events were recorded."""
        _, _, answer = await self._change(key, decision, 0, False)
        return answer

    async def create(self, key: str, first: E) -> S:
        """Append the event that opens a new aggregate; ConcurrencyConflict if it exists."""
        async with self._locked(key):
            state = self.kind.new(key)
            await self._append(key, state, [first], [], off_loop=True)
            self._remember(key, state)
            return state

    def forget(self, key: str) -> None:
        self._cache.pop(key, None)

    async def _change(self, key: str, decision: Callable[[S], tuple[list[E], A]],
                      min_version: int, latest: bool) -> tuple[S, list[E], A]:
        async with self._locked(key):
            state = await self._current(key, min_version, latest)
            appended: list[E] = []
            decided: tuple[list[E], A] | None = None
            give_up_at, lost = time.monotonic() + CONFLICT_SECONDS, 0
            while True:
                try:
                    decided = decision(state)
                except CommandRejected:
                    if await self._catch_up(key, state):
                        continue
                    if appended and decided is not None:
                        # Its first events are stored: the command took effect, and decided again on a state
                        # that holds them it would refuse itself. Another writer did the rest (the advancer,
                        # reacting to them), or made it moot.
                        return state, appended, decided[1]
                    raise   # refused on everything the store holds: the refusal stands
                events, answer = decided
                try:
                    await self._append(key, state, events, appended)
                    return state, appended, answer
                except ConcurrencyConflict as conflict:
                    lost += 1
                    if time.monotonic() > give_up_at:
                        raise
                    if lost > 2:    # out of step with a writer that appends as fast as we catch up: fall behind it
                        await asyncio.sleep(random.uniform(0, min(0.001 * lost, 0.05)))
                    await self._catch_up(key, state, at_least=conflict.last)

    async def _current(self, key: str, min_version: int, latest: bool = False) -> S:
        state = self._cache.get(key)
        if state is None:
            state = self.kind.new(key)
            await self._catch_up(key, state, at_least=min_version)
            self._remember(key, state)
            return state
        if latest or self.kind.always_catch_up or state.version < min_version:
            await self._catch_up(key, state, at_least=min_version)
        self._cache.move_to_end(key)
        return state

    async def _catch_up(self, key: str, state: S, at_least: int = 0) -> bool:
        """Apply what was appended since the state's version, `at_least` that far; whether there was anything."""
        before = state.version
        envelopes, last = await self.store.load_aggregate(f"{self.kind.prefix(key)}.>", self.kind.decode,
                                                          after=before, at_least=at_least,
                                                          unreadable=self.kind.unreadable)
        if self.prepare is not None:
            envelopes = await self.prepare(envelopes)
        for seq, event in envelopes:
            self.kind.evolve(state, event, seq)
        state.version = max(state.version, last)
        return state.version > before

    async def _append(self, key: str, state: S, events: list[E], appended: list[E], *, off_loop: bool = False) -> None:
        """`off_loop`: fold on a thread, for a state no one else holds yet whose first event may be large (a run
        of 10,000 steps takes ~75 ms to fold: the loop answers commands meanwhile)."""
        try:
            for event in events:
                (seq,) = await self.store.append_aggregate(self.kind.prefix(key), [self.kind.stored(event)],
                                                           state.version, cancel_timer=self.kind.obsoleted_timer(event))
                if off_loop:
                    await asyncio.to_thread(self.kind.evolve, state, event, seq)
                else:
                    self.kind.evolve(state, event, seq)
                appended.append(event)
        finally:
            if appended and not self.kind.keep(state):
                self.forget(key)

    def _remember(self, key: str, state: S) -> None:
        if not self.kind.keep(state):
            return
        self._cache[key] = state
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)

    @contextlib.asynccontextmanager
    async def _locked(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

