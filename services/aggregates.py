"""The engine's aggregates in the store: runs and circuit breakers, each a `Repository` kind."""
from __future__ import annotations

from events import subjects
from events.catalog import PlaybookPublished, decode_catalog_event
from events.circuit import CircuitEvent, decode_circuit_event
from events.codec import decode_event, stored_event
from events.run import RunEvent, RunRetried, RunStarted
from services.domain import breaker, catalog
from services.domain.breaker import Breaker, token
from services.domain.catalog import PlaybookVersions
from services.domain.run import state
from services.domain.run.gates import obsoleted_timer
from services.domain.run.state import Run
from services.playbook_store import PlaybookStore
from services.repository import Aggregate, Repository
from services.store import EventStore

RunRepository = Repository[Run, RunEvent]
BreakerRepository = Repository[Breaker, CircuitEvent]
CatalogRepository = Repository[PlaybookVersions, PlaybookPublished]


def _worth_keeping(run: Run) -> bool:
    """Finished and parked runs leave the cache: waiting costs nothing here."""
    return run.exists and not run.finished and not run.parked


RUNS: Aggregate[Run, RunEvent] = Aggregate(
    prefix=subjects.run, decode=decode_event, new=lambda run_id: Run(id=run_id), evolve=state.evolve,
    keep=_worth_keeping, obsoleted_timer=obsoleted_timer, unreadable=stored_event,
    stored=lambda event: event.as_stored() if isinstance(event, RunStarted | RunRetried) else event)

# Breakers are shared by every replica: each decision first reads what others appended
# since (only that: the cached breaker is brought up to date, not reloaded).
BREAKERS: Aggregate[Breaker, CircuitEvent] = Aggregate(
    prefix=lambda key: subjects.circuit(token(key)), decode=decode_circuit_event, new=lambda key: Breaker(key=key),
    evolve=breaker.evolve, always_catch_up=True)

# One name's versions; another replica may have published since, so every decision reads that first.
CATALOG: Aggregate[PlaybookVersions, PlaybookPublished] = Aggregate(
    prefix=subjects.catalog_entry, decode=decode_catalog_event, new=lambda name: PlaybookVersions(name=name),
    evolve=catalog.evolve, always_catch_up=True)


def run_repository(store: EventStore, playbooks: PlaybookStore, capacity: int = 2000) -> RunRepository:
    """Runs, each pinned playbook resolved through `playbooks` before it folds."""
    return Repository(store, RUNS, capacity, prepare=playbooks.resolved)


def breaker_repository(store: EventStore, capacity: int = 1000) -> BreakerRepository:
    return Repository(store, BREAKERS, capacity)


def catalog_repository(store: EventStore) -> CatalogRepository:
    """`store` is on PB_CATALOG."""
    return Repository(store, CATALOG, capacity=1000)
