"""What interfaces and projections may read of the engine, in one place.

The CLI, the web server and the projections depend on this module (and on the
language, `services.playbook`, to check playbooks), never on the services' insides:
the run fold and its states (from `services.fold`, which needs no NATS client), breakers,
a dry run's plan, the playbook catalog and the playbooks runs pin (read, resolved, uploaded),
reading runs and breakers from the stream (asked again through elections), and whether the
store takes writes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from events import subjects
from events.circuit import CircuitEvent, decode_circuit_event
from events.run import RunStarted
from services.catalog import Catalog
from services.domain.breaker import Breaker, token
from services.domain.breaker import evolve as evolve_breaker
from services.domain.catalog import DEFAULT_VERSION, is_digest, parse_reference
from services.domain.run.dry_run import PlannedStep
from services.domain.run.gates import started_by
from services.fold import (
    ACTIVE_RUN, FINISHED_RUN, RUN_STATUSES, ParsedPlaybook, Quarantined, Run, StepState,
    approvals_needed, digest_of, dry_run_plan, evolve, fold, plan_waves,
)
from services.jetstream import persist
from services.logs import Watched, run_with_output, stored_output
from services.named_consumers import named_jetstream
from services.ordered import run_events
from services.playbook_store import PlaybookStore
from services.readiness import StoreReadiness, wait_for_streams
from services.store import EventStore

__all__ = [
    "ACTIVE_RUN", "DEFAULT_VERSION", "FINISHED_RUN", "RUN_STATUSES", "Breaker", "Catalog", "EventStore",
    "ParsedPlaybook", "PlannedStep", "PlaybookStore", "Quarantined", "Run", "StepState", "StoreReadiness", "Watched",
    "all_breakers", "approvals_needed", "breaker_history", "digest_of", "dry_run_plan", "evolve", "fold", "is_digest",
    "named_jetstream", "parse_reference", "persist", "plan_waves", "run_events", "run_started", "run_with_output",
    "started_by", "stored_output", "WORKERS", "Worker", "wait_for_streams", "workers",
]

# The services that take their work from PB_RUNS, each through its durable consumer (a delivery goes to one replica).
WORKERS = {"run": "advancer", "executor": "executor", "approval": "approval", "resilience": "resilience",
           "safety-net": "abandoned"}    # the run service's reaction to what any service gave up on


@dataclass(frozen=True, slots=True)
class Worker:
    """Whether any replica of a service takes its work now, and the events waiting for it (stored and not yet
    delivered, or delivered and not yet done); None when the service has never started."""

    up: bool
    backlog: int | None


async def workers(nc: NATS) -> dict[str, Worker]:
    """Each worker service as JetStream sees its consumer: bound while a replica listens for its deliveries."""
    js, found = nc.jetstream(), {}
    for service, consumer in WORKERS.items():
        try:
            info = await js.consumer_info(subjects.RUNS_STREAM, consumer)
        except NotFoundError:
            found[service] = Worker(up=False, backlog=None)
            continue
        found[service] = Worker(up=bool(info.push_bound), backlog=(info.num_pending or 0) + (info.num_ack_pending or 0))
    return found


async def run_started(store: EventStore, run_id: str) -> RunStarted | None:
    """The run's first event (what it runs, where, started by whom), without reading the rest."""
    data = await store.last_on(subjects.run_event(run_id, "RunStarted"))
    return None if data is None else msgspec.json.decode(data, type=RunStarted)


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

