"""A generated history for the learning service's tests, and its store on SQLite or PostgreSQL.

Hundreds of runs of three playbooks, written as the engine writes them (through the event
store, with optimistic concurrency), on a simulated clock so bursts and correlations are
exact:

- `deploy`: `health` (an HTTP GET that always passes, 40-59 ms), `migrate` (shell, no
  timeout, 1.0-3.0 s), `fetch` (every third run: 503 twice, then passes after a 1 s
  backoff; every third run: 404 four times, out of attempts), `notify` (401 in 20 runs,
  no retry, no error handler).
- `report` / `query` (no breaker, alice's) and `nightly` / `backup` (the scheduler's) both call
  db.internal; it is down in four outages, where both fail with `network` within seconds, never retried.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from events.run import (
    RunCompleted, RunEvent, RunFailed, RunPaused, RunResumed, RunStarted, StepFailed, StepNotRetried,
    StepRetryScheduled, StepScheduled, StepStarted, StepSucceeded,
)
from events.identity import caller_headers
from services.identity.bootstrap import ensure_local_admin
from services.identity.setup import Identity
from services.learning.config import LearningConfig, postgres_settings
from services.store import EventStore
from tests.helpers import T0, started

DEPLOY_RUNS = 300
ENVIRONMENTS = ("staging", "production")
OUTAGES = 4
RUNS_PER_OUTAGE = 4

DEPLOY = [
    {"id": "health", "action": "http_request", "args": {"url": "http://api.internal/health"}, "timeout_seconds": 5},
    {"id": "migrate", "action": "shell", "args": {"command": "migrate"}},
    {"id": "fetch", "action": "http_request", "args": {"url": "http://api.internal/artifact"}, "timeout_seconds": 5,
     "retry": {"max_attempts": 4, "base_delay": 0.5, "jitter": "none", "retry_on_errors": ["temporary", "permanent"]}},
    {"id": "notify", "action": "http_request", "timeout_seconds": 5,
     "args": {"url": "http://hooks.internal/notify", "method": "POST", "json": {"text": "deployed"}}},
]
REPORT = [{"id": "query", "action": "http_request", "args": {"url": "http://db.internal/q"}, "timeout_seconds": 10,
           "circuit": False}]
STARTERS = {"report": "alice", "nightly": "scheduler"}
NIGHTLY = [{"id": "backup", "action": "http_request", "timeout_seconds": 10,
            "args": {"url": "http://db.internal/backup", "method": "POST", "data": "now"}}]


class Run:
    """One run's events, as the engine records them, on a clock of its own."""

    def __init__(self, run_id: str, steps: list[dict[str, Any]], name: str, at: datetime,
                 environment: str | None = None, actor: str = "alice") -> None:
        self.run_id, self.clock = run_id, at
        first = started(run_id, steps, name=name, environment=environment, actor=actor,
                        **({"environments": dict.fromkeys(ENVIRONMENTS, {})} if environment else {}))
        self.events: list[RunEvent] = [RunStarted(**{**_fields(first), "at": at})]

    def tick(self, seconds: float = 0.01) -> datetime:
        self.clock += timedelta(seconds=seconds)
        return self.clock

    def attempt(self, step: str, attempt: int, ms: float, error: str = "", category: str = "unknown",
                status: int | None = None) -> None:
        common = {"run_id": self.run_id, "step_id": step, "attempt": attempt}
        self.events += [StepScheduled(**common, at=self.tick()), StepStarted(**common, at=self.tick(), executor="x")]
        done = self.tick(ms / 1000)
        if not error:
            self.events.append(StepSucceeded(**common, at=done, duration_ms=ms))
        else:
            outputs = {"status_code": status} if status else {}
            self.events.append(StepFailed(**common, at=done, duration_ms=ms, error=error, category=category,
                                          outputs=outputs))

    def retry(self, step: str, attempt: int, category: str, delay: float) -> None:
        at = self.tick()
        self.events.append(StepRetryScheduled(run_id=self.run_id, at=at, step_id=step, attempt=attempt + 1,
                                              delay_seconds=delay, due=at + timedelta(seconds=delay),
                                              category=category, reason="retry"))
        self.tick(delay)

    def give_up(self, step: str, attempt: int, category: str, exhausted: bool = False) -> None:
        self.events.append(StepNotRetried(run_id=self.run_id, at=self.tick(), step_id=step, attempt=attempt,
                                          category=category, reason="not retried", exhausted=exhausted))
        self.events.append(RunFailed(run_id=self.run_id, at=self.tick(), reason=f"{step} failed", failed_steps=[step]))

    def pause(self, seconds: float) -> None:
        """Paused by someone for this long, then resumed."""
        self.events.append(RunPaused(run_id=self.run_id, at=self.tick(), actor="alice"))
        self.events.append(RunResumed(run_id=self.run_id, at=self.tick(seconds), actor="alice"))

    def complete(self) -> None:
        self.events.append(RunCompleted(run_id=self.run_id, at=self.tick()))


def deploy(i: int) -> Run:
    run = Run(f"deploy-{i:04d}", DEPLOY, "deploy", T0 + timedelta(minutes=10 * i))
    run.attempt("health", 1, 40 + i % 20)
    run.attempt("migrate", 1, 1000 + (i % 21) * 100)
    if i % 3 == 0:                              # 503, 503, then passes after a 1 s backoff
        run.attempt("fetch", 1, 20, "HTTP 503", "temporary", 503)
        run.retry("fetch", 1, "temporary", 0.5)
        run.attempt("fetch", 2, 20, "HTTP 503", "temporary", 503)
        run.retry("fetch", 2, "temporary", 1.0)
        run.attempt("fetch", 3, 20)
    elif i % 3 == 1:                            # 404 on every attempt
        for attempt, delay in ((1, 0.5), (2, 1.0), (3, 2.0)):
            run.attempt("fetch", attempt, 15, "HTTP 404", "permanent", 404)
            run.retry("fetch", attempt, "permanent", delay)
        run.attempt("fetch", 4, 15, "HTTP 404", "permanent", 404)
        run.give_up("fetch", 4, "permanent", exhausted=True)
        return run
    else:
        run.attempt("fetch", 1, 20)
    if i % 10 == 5:
        run.attempt("notify", 1, 30, "HTTP 401", "authentication", 401)
        run.give_up("notify", 1, "authentication")
        return run
    run.attempt("notify", 1, 30)
    run.complete()
    return run


def db_runs(outage: int) -> list[Run]:
    """One outage of db.internal: the report and the nightly backup fail within seconds; both passed an hour before."""
    begin = T0 + timedelta(days=30, hours=6 * outage)
    runs = []
    for kind, steps, step in (("report", REPORT, "query"), ("nightly", NIGHTLY, "backup")):
        healthy = Run(f"{kind}-{outage}-ok", steps, kind, begin - timedelta(hours=1), actor=STARTERS[kind])
        healthy.attempt(step, 1, 80)
        healthy.complete()
        runs.append(healthy)
    failing = [("report", REPORT, "query", 5 * n) for n in range(RUNS_PER_OUTAGE)]
    failing += [("nightly", NIGHTLY, "backup", 5 * n + 2) for n in range(2)]
    for n, (kind, steps, step, seconds) in enumerate(sorted(failing, key=lambda f: f[3])):
        run = Run(f"{kind}-{outage}-{n}", steps, kind, begin + timedelta(seconds=seconds), actor=STARTERS[kind])
        run.attempt(step, 1, 3, "connection refused", "network")
        run.give_up(step, 1, "network")
        runs.append(run)
    return runs


def outages() -> list[Run]:
    return [run for outage in range(OUTAGES) for run in db_runs(outage)]


async def record(store: EventStore, runs: list[Run], together: int = 1) -> int:
    """Append every run as the engine would, `together` runs at a time; returns the stream's last sequence."""
    last = 0
    for first in range(0, len(runs), together):
        batch = runs[first:first + together]
        appended = await asyncio.gather(*(store.append(run.run_id, run.events, 0) for run in batch))
        last = max(last, *(sequences[-1] for sequences in appended))
    return last


async def record_history(store: EventStore) -> int:
    """The whole history. Deploy runs are ten minutes apart, so their order teaches nothing and they go in
    together; an outage's runs go in the order they failed."""
    await record(store, [deploy(i) for i in range(DEPLOY_RUNS)], together=25)
    return await record(store, outages())


def _fields(event: RunStarted) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__struct_fields__}


@pytest.fixture(params=["sqlite", "postgres"])
def learning_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LearningConfig]:
    """The learning service's store: SQLite files in a temp dir, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield LearningConfig(directory=tmp_path / "learning")
    else:
        url = request.getfixturevalue("postgres_url")
        yield LearningConfig(directory=tmp_path / "learning", postgres=postgres_settings(url))


@pytest.fixture(params=["sqlite", "postgres"])
def learning_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """What a learning service process needs in its environment for SQLite (nothing) or PostgreSQL."""
    if request.param == "sqlite":
        return {}
    return {"PLAYBOOK_LEARNING_POSTGRES": request.getfixturevalue("postgres_url")}


@pytest.fixture
async def identity(nc) -> AsyncIterator[Identity]:
    """The guard a learning service asks before it answers, as the root builds it."""
    built = await Identity.start(nc, lambda _name: [])
    try:
        yield built
    finally:
        await built.stop()


@pytest.fixture
async def admin_headers(identity: Identity, tmp_path: Path) -> dict[str, str]:
    """The local admin's `Authorization` header: it may ask for insights and rebuilds."""
    admin = await ensure_local_admin(tmp_path / "home", identity.store, identity.registry, name="admin",
                                     now=datetime.now(timezone.utc))
    return caller_headers(admin.credential)
