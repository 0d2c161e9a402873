"""A circuit breaker shared by concurrent runs: opens, fails fast, half-opens, closes."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from events.circuit import CircuitHalfOpened
from events.commands import CancelRun, ResetCircuit, StartRun
from events.playbook import CircuitSpec
from services.aggregates import breaker_repository
from services.domain.breaker import after_call
from services.store import EventStore
from tests.helpers import playbook_yaml, until, wait_for_end

pytestmark = pytest.mark.integration


def now() -> datetime:
    return datetime.now(timezone.utc)


class CountingTarget:
    """A TCP endpoint that counts connections: dead (closes at once) or healthy (HTTP 200)."""

    def __init__(self) -> None:
        self.connections = 0
        self.healthy = False
        self.server: asyncio.base_events.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.healthy:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"


@pytest.fixture
async def target():
    t = CountingTarget()
    t.server = await asyncio.start_server(t.handle, "127.0.0.1", 0)
    yield t
    t.server.close()


def calling(url: str) -> str:
    return playbook_yaml([{"id": "call", "action": "http_request", "args": {"url": url}, "timeout_seconds": 5,
                           "circuit": {"failure_threshold": 3, "open_seconds": 1.5, "half_open_trials": 1}}])


async def run_all(engine, text: str, count: int) -> list[list]:
    replies = await asyncio.gather(*(engine.send(StartRun(playbook=text)) for _ in range(count)))
    return await asyncio.gather(*(wait_for_end(engine, r.run_id) for r in replies))


def failures(histories: list[list]) -> list:
    return [e for h in histories for e in h if type(e).__name__ == "StepFailed"]


async def test_the_breaker_opens_fails_fast_then_one_trial_closes_it(engine, target) -> None:
    text = calling(target.url)
    first = await run_all(engine, text, 20)                   # 20 concurrent runs on a dead target
    assert all(type(h[-1]).__name__ == "RunFailed" for h in first)
    (breaker,) = await engine.circuits()
    assert breaker.state == "open" and breaker.failures >= 3
    seen = target.connections
    # Calls already past a closed breaker go on; the client retries once a connection the
    # target closed without answering, so at most two connections per run.
    assert 3 <= seen <= 40

    later = await run_all(engine, text, 10)                   # while open: no connection at all
    assert target.connections == seen
    fast = failures(later)
    assert len(fast) == 10 and all(f.category == "dependency" and "circuit" in f.error for f in fast)

    target.healthy = True
    await asyncio.sleep(1.6)                                   # let the open duration pass
    trial = await run_all(engine, text, 1)
    assert type(trial[0][-1]).__name__ == "RunCompleted"
    assert target.connections == seen + 1                      # exactly one trial call went through
    (breaker,) = await engine.circuits()
    assert breaker.state == "closed"


async def test_a_call_failed_fast_by_an_open_breaker_is_a_dependency_failure_and_stays_one(engine, target) -> None:
    await run_all(engine, calling(target.url), 3)               # open it: connections refused
    policy = {"max_attempts": 1}
    (history,) = await run_all(engine, playbook_yaml([{"id": "call", "action": "http_request", "timeout_seconds": 5,
                                                       "args": {"url": target.url}, "retry": policy,
                                                       "circuit": {"failure_threshold": 3, "open_seconds": 60}}]), 1)
    failed = next(e for e in history if type(e).__name__ == "StepFailed")
    not_retried = next(e for e in history if type(e).__name__ == "StepNotRetried")
    assert (failed.category, not_retried.category) == ("dependency", "dependency")
    assert failed.outputs["circuit_open"] in not_retried.reason


async def test_a_breaker_can_be_reset_by_hand_and_the_reset_names_who(engine, target) -> None:
    await run_all(engine, calling(target.url), 3)
    (breaker,) = await engine.circuits()
    assert breaker.state == "open"
    reply = await engine.send(ResetCircuit(key=breaker.key))
    assert reply.accepted and reply.events[0]["actor"] == "admin"   # the verified principal: the local admin
    (breaker,) = await engine.circuits()
    assert breaker.state == "closed"


async def test_resetting_a_breaker_that_does_not_exist_is_refused_and_makes_none(engine) -> None:
    reply = await engine.send(ResetCircuit(key="http://nowhere:80"))
    assert not reply.accepted and reply.error.code == "unknown_circuit"
    assert "no circuit breaker 'http://nowhere:80'" in reply.error.message
    assert await engine.circuits() == []


async def test_on_open_wait_retries_when_the_breaker_half_opens(engine, target) -> None:
    await run_all(engine, calling(target.url), 3)                # open it
    target.healthy = True
    seen = target.connections
    waiting = playbook_yaml([{"id": "call", "action": "http_request", "args": {"url": target.url}, "timeout_seconds": 5,
                              "retry": {"max_attempts": 3, "base_delay": 0.01, "max_delay": 5, "jitter": "none"},
                              "circuit": {"failure_threshold": 3, "open_seconds": 1.5, "on_open": "wait"}}])
    (history,) = await run_all(engine, waiting, 1)
    assert type(history[-1]).__name__ == "RunCompleted"
    retry = next(e for e in history if type(e).__name__ == "StepRetryScheduled")
    assert retry.delay_seconds > 0.5                              # waited for the half-open, not 0.01 s
    assert target.connections == seen + 1


class TwoReplicas:
    """Two replicas' breaker repositories on one stream, each with its own cache, failing calls to "db"."""

    def __init__(self, nc, failure_threshold: int) -> None:
        self.store = EventStore(nc)
        self.spec = CircuitSpec(failure_threshold=failure_threshold, open_seconds=60)
        self.replicas = [breaker_repository(self.store), breaker_repository(EventStore(nc))]

    async def fail(self, n: int, replica: int | None = None) -> None:
        breakers = self.replicas[n % 2 if replica is None else replica]
        await breakers.change("db", lambda b: after_call(b, self.spec, f"r{n}", "s", now(), "network", "refused"))


async def test_replicas_with_cached_breakers_see_each_others_changes_and_never_lose_one(nc) -> None:
    """Two replicas' breakers on one key: each reads only what is new, OCC keeps every event."""
    two = TwoReplicas(nc, failure_threshold=40)
    await two.store.ensure_stream()
    store, replicas, fail = two.store, two.replicas, two.fail
    await asyncio.gather(*(fail(n) for n in range(39)))
    assert [(await r.get("db")).failures for r in replicas] == [39, 39]
    await fail(39, replica=0)                                    # the 40th, on either replica, opens it
    assert [(await r.get("db")).state for r in replicas] == ["open", "open"]
    fresh = await breaker_repository(store).get("db")                     # the cache agrees with a full read
    assert (fresh.failures, fresh.version) == (40, (await replicas[1].get("db")).version)


async def test_a_burst_of_changes_to_one_breaker_from_two_replicas_all_land(nc) -> None:
    """A replica's decision lost to the other's appends twenty times in a row was given up (ConcurrencyConflict,
    the call's outcome lost) while the other still had a queue of changes to that key: now it keeps deciding again
    until that queue is drained."""
    two = TwoReplicas(nc, failure_threshold=1000)
    await two.store.ensure_stream()
    await asyncio.gather(*(two.fail(n) for n in range(300)))
    assert (await breaker_repository(two.store).get("db")).failures == 300


async def test_a_trial_call_cancelled_mid_way_frees_its_place_and_the_next_call_tests_the_target(engine,
                                                                                                 tmp_path) -> None:
    """A half-open breaker whose only trial was cancelled would otherwise refuse every call for ever,
    each as 'trial call(s) are under way'."""
    def guarded(command: str) -> str:
        return playbook_yaml([{"id": "call", "action": "shell", "args": {"command": command}, "timeout_seconds": 60,
                               "circuit": {"key": "db", "failure_threshold": 1, "open_seconds": 0.2}}])
    (failed,) = await run_all(engine, guarded("echo 'service unavailable' >&2; exit 1"), 1)
    assert type(failed[-1]).__name__ == "RunFailed"
    (breaker,) = await engine.circuits()
    await until(lambda: now() > breaker.until, what="the open time passed")

    trial = await engine.send(StartRun(playbook=guarded(f"touch {tmp_path}/calling; sleep 60")))
    async for _, event in engine.follow(trial.run_id):
        if type(event).__name__ == "StepStarted":
            break
    await until(lambda: (tmp_path / "calling").exists(), what="the trial call under way")
    assert (await engine.send(CancelRun(run_id=trial.run_id, reason="hung"))).accepted
    assert type((await wait_for_end(engine, trial.run_id))[-1]).__name__ == "RunCancelled"

    (passed,) = await run_all(engine, guarded("echo ok"), 1)
    assert type(passed[-1]).__name__ == "RunCompleted", passed[-1]
    (breaker,) = await engine.circuits()
    assert breaker.state == "closed"
    history = [event for _, event in await engine.circuit_events(breaker.key)]
    assert [e.trial_lost for e in history if isinstance(e, CircuitHalfOpened)] == ["", f"{trial.run_id}/call"]
