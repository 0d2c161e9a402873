"""What interfaces and projections may read of the engine, in one place.

The CLI, the web server and the projections depend on this module (and on the
language, `services.playbook`, to check playbooks), never on the services' insides:
the run fold and its states, breakers, a dry run's plan, stored playbooks, and
reading runs and breakers from the stream.
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence

import msgspec
from nats.aio.client import Client as NATS

from events import subjects
from events.circuit import CircuitEvent, decode_circuit_event
from events.codec import decode_event
from events.run import RunEvent
from services.domain.breaker import Breaker, token
from services.domain.breaker import evolve as evolve_breaker
from services.domain.run.dry_run import PlannedStep
from services.domain.run.dry_run import plan as dry_run_plan
from services.domain.run.gates import approvals_needed
from services.domain.run.state import ACTIVE_RUN, FINISHED_RUN, RUN_STATUSES, Run, StepState, evolve, fold
from services.library import StoredPlaybook, find_playbook, stored_playbooks
from services.ordered import in_order
from services.playbook.plan import plan_waves
from services.store import EventStore

__all__ = [
    "ACTIVE_RUN", "FINISHED_RUN", "RUN_STATUSES", "Breaker", "EventStore", "PlannedStep", "Run", "StepState",
    "StoredPlaybook", "all_breakers", "approvals_needed", "breaker_history", "dry_run_plan", "evolve", "find_playbook",
    "fold", "plan_waves", "run_events", "stored_playbooks",
]


async def all_breakers(store: EventStore) -> list[Breaker]:
    """Every breaker the engine has seen, for `playbook circuits`."""
    envelopes, _ = await store.load_aggregate(subjects.CIRCUIT_SUBJECTS, decode_circuit_event)
    breakers: dict[str, Breaker] = {}
    for seq, event in envelopes:
        evolve_breaker(breakers.setdefault(event.key, Breaker(key=event.key)), event, seq)
    return sorted(breakers.values(), key=lambda b: b.key)


async def breaker_history(store: EventStore, key: str) -> Sequence[tuple[int, CircuitEvent]]:
    """Every event of one breaker, with its stream sequence, for `playbook events --circuit`."""
    envelopes, _ = await store.load_aggregate(f"{subjects.circuit(token(key))}.>", decode_circuit_event)
    return envelopes


async def run_events(nc: NATS, run_id: str, after: int = 0) -> AsyncGenerator[tuple[int, RunEvent, int]]:
    """The run's events stored after sequence `after`, then live ones, endless: each with its
    sequence and how many more of the run's events were stored when it was read."""
    reader = in_order(nc, subjects.RUNS_STREAM, [subjects.run_all(run_id)], after, prefix="run")
    async with contextlib.aclosing(reader):
        async for stored in reader:
            try:
                event = decode_event(stored.data)
            except msgspec.DecodeError:
                continue      # not an event of ours; its sequence is skipped like any other
            yield stored.seq, event, stored.pending
