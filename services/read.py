"""What interfaces and projections may read of the engine, in one place.

The CLI, the web server and the projections depend on this module, never on the
services' insides: the run fold and its states, breakers, the plan's waves, a dry run's
plan, stored playbooks, and reading runs and breakers from the stream.
"""
from __future__ import annotations

from events import subjects
from events.circuit import CircuitEvent, decode_circuit_event
from services.domain.breaker import Breaker, evolve as evolve_breaker, token
from services.store import EventStore


async def all_breakers(store: EventStore) -> list[Breaker]:
    """Every breaker the engine has seen, for `playbook circuits`."""
    envelopes, _ = await store.load_aggregate(subjects.CIRCUIT_SUBJECTS, decode_circuit_event)
    breakers: dict[str, Breaker] = {}
    for seq, event in envelopes:
        evolve_breaker(breakers.setdefault(event.key, Breaker(key=event.key)), event, seq)
    return sorted(breakers.values(), key=lambda b: b.key)


async def breaker_history(store: EventStore, key: str) -> list[tuple[int, CircuitEvent]]:
    """Every event of one breaker, with its stream sequence, for `playbook events --circuit`."""
    envelopes, _ = await store.load_aggregate(f"{subjects.circuit(token(key))}.>", decode_circuit_event)
    return envelopes
