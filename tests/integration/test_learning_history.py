"""What weeks of history say, told straight: a run paused for an hour is not a slow run, and a step that got
slower when its playbook changed is said to have, with the numbers before and after, not averaged across."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from events.insights import Insights
from services.learning.config import LearningConfig
from services.learning.service import LearningService
from services.playbook_store import PlaybookStore
from services.store import EventStore
from tests.helpers import T0
from tests.learning import Run, admin_headers, identity, learning_config, record  # noqa: F401 - fixtures
from tests.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures
from ui.insights import LearningClient

pytestmark = pytest.mark.integration

RUNS = 30
PAUSED = [{"id": "a", "action": "shell", "args": {"command": "true"}, "timeout_seconds": 5},
          {"id": "b", "action": "shell", "args": {"command": "true"}, "timeout_seconds": 5}]


def build(i: int) -> Run:
    """`compile` takes about 1 s until run 30, when its command changed; about 10 s since. `fetch` called a host
    that refused every attempt until run 30; since, it calls another, refused once then answering."""
    before = i < RUNS
    steps = [{"id": "compile", "action": "shell", "args": {"command": "make" if before else "make all"}},
             {"id": "fetch", "action": "shell", "args": {"command": "fetch old" if before else "fetch new"},
              "retry": {"max_attempts": 3, "base_delay": 1, "jitter": "none"}}]
    run = Run(f"build-{i:03d}", steps, "build", T0 + timedelta(hours=i))
    run.attempt("compile", 1, (1000 if before else 10_000) + i)
    run.attempt("fetch", 1, 10, "connection refused", "network")
    run.retry("fetch", 1, "network", 1)
    if before:
        run.attempt("fetch", 2, 10, "connection refused", "network")
        run.retry("fetch", 2, "network", 2)
        run.attempt("fetch", 3, 10, "connection refused", "network")
        run.give_up("fetch", 3, "network", exhausted=True)
        return run
    run.attempt("fetch", 2, 10)
    run.complete()
    return run


def canary(i: int) -> Run:
    """Two ways of `ship` in use at once: every other run the canary's, slower."""
    command = "ship --canary" if i % 2 else "ship"
    run = Run(f"canary-{i:03d}", [{"id": "ship", "action": "shell", "args": {"command": command}}], "canary",
              T0 + timedelta(hours=i))
    run.attempt("ship", 1, 3000 if i % 2 else 1000)
    run.complete()
    return run


def paused(i: int) -> Run:
    """Every other run is paused an hour between its two steps of 100 ms."""
    run = Run(f"paused-{i:03d}", PAUSED, "paused", T0 + timedelta(hours=i))
    run.attempt("a", 1, 100)
    if i % 2:
        run.pause(3600)
    run.attempt("b", 1, 100)
    run.complete()
    return run


@pytest.fixture
async def learned(nc, learning_config: LearningConfig, identity, admin_headers) -> AsyncIterator[Insights]:
    store = EventStore(nc)
    await store.ensure_stream()
    last = await record(store, [*(build(i) for i in range(2 * RUNS)), *(paused(i) for i in range(RUNS)),
                                *(canary(i) for i in range(2 * RUNS))])
    service = LearningService(nc, store, learning_config, PlaybookStore(nc), identity.guard)
    await service.start()
    try:
        yield await LearningClient(nc, admin_headers).insights(after=last, wait=30)
    finally:
        await service.stop()


async def test_time_a_run_spent_paused_is_not_counted_in_its_duration(learned) -> None:
    paused, = (p for p in learned.playbooks if p.playbook == "paused")
    assert paused.durations is not None and paused.durations.count == RUNS
    assert paused.durations.max_ms < 1000       # 200 ms of steps, and the engine's ticks; not an hour


async def test_a_step_that_got_slower_when_it_changed_is_said_to_have_with_both_sides(learned) -> None:
    build, = (p for p in learned.playbooks if p.playbook == "build")
    compile_, _ = build.steps
    assert compile_.durations is not None and compile_.durations.count == RUNS
    assert 9_000 < compile_.durations.p50_ms <= 11_000
    assert compile_.durations_before is not None and compile_.durations_before.count == RUNS
    assert 900 < compile_.durations_before.p50_ms <= 1_100
    assert compile_.changed == T0 + timedelta(hours=RUNS)
    slower, = (r for r in build.recommendations if r.kind == "slower")
    assert slower.message == ("step `compile` got slower when it changed on 2026-01-02 18:00 UTC: its passing "
                              "attempts take 10.059 s at the median (30 of them), against 1.024 s (30) before")
    assert slower.evidence.count == RUNS and slower.evidence.figures["count_before"] == RUNS
    timeout, = (r for r in build.recommendations if r.kind == "timeout" and r.step == "compile")
    assert timeout.evidence.count == RUNS and timeout.suggestion == {"timeout_seconds": 21}   # as it is now


async def test_what_a_step_did_before_it_changed_is_no_evidence_about_it_now(learned) -> None:
    """Its old host's refusals (every attempt, out of attempts 30 times) would make the retry advice one attempt
    more than the new host ever needed."""
    build, = (p for p in learned.playbooks if p.playbook == "build")
    _, fetch = build.steps
    assert (fetch.passed, fetch.gave_up, fetch.attempts, fetch.recovered_at_attempt) == (RUNS, 0, 2 * RUNS, {2: RUNS})
    assert fetch.since == fetch.changed == T0 + timedelta(hours=RUNS)
    retry, = (r for r in build.recommendations if r.kind == "retry")
    assert retry.suggestion == {"retry": {"max_attempts": 2, "retry_on_errors": ["network"], "base_delay": 1.0}}
    assert "ran out" not in retry.message


async def test_two_ways_of_a_step_in_use_at_once_are_each_learned_whole(learned) -> None:
    """Each switch between them keeps both: the current one's counts and the other's, nothing lost or mixed."""
    canary, = (p for p in learned.playbooks if p.playbook == "canary")
    ship, = canary.steps
    assert ship.durations is not None and ship.durations_before is not None
    assert (ship.passed, ship.durations.count, ship.durations_before.count) == (RUNS, RUNS, RUNS)
    assert ship.durations.max_ms == 3000 and ship.durations_before.max_ms == 1000   # the canary's ran last
