"""Leases on attempts against a real nats-server: of two writers on one lease exactly one wins, every time."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from events.commands import StartRun
from events.run import StepFailed, StepSucceeded
from services.executor import work as work_module
from services.executor.holding import Keeper
from services.leases import AttemptId, Lease, LeaseRecord, LeaseStore
from tests.helpers import playbook_yaml, running_engine, until, wait_for_end

pytestmark = pytest.mark.integration

ATTEMPT = AttemptId("run1", "deploy", 1)


def record(holder: str, purpose: str = "run") -> LeaseRecord:
    return LeaseRecord(state="held", holder=holder, purpose=purpose, run_id="run1", step_id="deploy", attempt=1,
                       seconds=5.0)


@pytest.fixture
async def leases(nc) -> LeaseStore:
    store = LeaseStore(nc)
    await store.ensure_stream()
    await store.ensure_stream()   # idempotent
    return store


async def test_an_attempt_is_claimed_once_and_its_holder_renews_it(leases: LeaseStore) -> None:
    mine = await leases.claim(ATTEMPT, record("ex1"))
    assert mine is not None and mine.subject == "pb.lease.run1.deploy.s1"
    assert await leases.claim(ATTEMPT, record("ex2")) is None
    renewed = await leases.renew(mine)
    assert renewed is not None and renewed.seq > mine.seq
    assert (await leases.read(mine.subject)).record.holder == "ex1"


async def test_a_taker_wins_only_on_the_record_it_saw_and_the_holder_then_knows_it_lost(leases: LeaseStore) -> None:
    held = await leases.claim(ATTEMPT, record("ex1"))
    seen = await leases.read(held.subject)
    renewed = await leases.renew(held)                    # the holder renewed after the taker looked
    assert await leases.take(seen, record("ex2", "takeover")) is None
    seen = await leases.read(held.subject)
    taken = await leases.take(seen, record("ex2", "takeover"))
    assert taken is not None and taken.record.purpose == "takeover"
    assert await leases.renew(renewed) is None            # fenced: ex1 may not renew any more


async def test_a_renewal_whose_answer_was_lost_is_recognised_as_its_own(leases: LeaseStore) -> None:
    held = await leases.claim(ATTEMPT, record("ex1"))
    await leases.renew(held)                              # landed; pretend its answer never came back
    again = await leases.renew(held)
    assert again is not None and again.record.holder == "ex1"


async def test_a_released_attempt_can_be_claimed_again_and_watchers_see_every_change(leases: LeaseStore) -> None:
    seen: list[tuple[str, str, str]] = []

    async def watcher(subject: str, seq: int, state: str, holder: str) -> None:
        seen.append((subject, state, holder))

    held = await leases.claim(ATTEMPT, record("ex1"))
    sub = await leases.watch(watcher, heartbeat=1.0)
    try:
        await until(lambda: seen, what="the lease there was when watching began")
        assert seen == [("pb.lease.run1.deploy.s1", "held", "ex1")]
        await leases.release(held)
        again = await leases.claim(ATTEMPT, record("ex2"))
        assert again is not None and (await leases.read(held.subject)).record.holder == "ex2"
        await until(lambda: len(seen) == 3, what="the release and the new claim")
        assert seen[1:] == [("pb.lease.run1.deploy.s1", "released", "ex1"), ("pb.lease.run1.deploy.s1", "held", "ex2")]
    finally:
        await sub.unsubscribe()


async def test_a_rollback_attempt_has_a_lease_and_a_key_of_its_own() -> None:
    undo = AttemptId("run1", "deploy", 1, rollback=True)
    assert (undo.subject, undo.key) == ("pb.lease.run1.deploy.r1", "run1/deploy/rollback/1")
    assert ATTEMPT.key == "run1/deploy/1"


class DeadlinesOnly:
    """The guardian's deadlines as the holder sends them (the kills are the guardian's own test's)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, float, float]] = []     # (attempt, deadline, when sent)

    def deadline(self, attempt: str, at: float) -> None:
        self.sent.append((attempt, at, time.monotonic()))

    def over(self, attempt: str) -> None:
        pass


async def test_a_renewal_confirmed_after_the_deadline_loses_the_lease_the_guardian_already_killed_for(nc) -> None:
    """The loop was too busy: the store confirmed a renewal, but the holder learnt it only after the deadline, when
    the guardian had killed the attempt's processes. The holder must not carry on as if it held the lease: the
    step's end (killed) would be recorded as its own failure instead of an interruption."""

    class ConfirmedLate(LeaseStore):
        async def renew(self, lease: Lease) -> Lease | None:
            renewed = await super().renew(lease)
            time.sleep(max(0.0, holding.deadline - time.monotonic()) + 0.05)  # noqa: ASYNC251 -- a busy loop, on purpose
            return renewed

    leases = ConfirmedLate(nc)
    await leases.ensure_stream()
    guardian, lost = DeadlinesOnly(), list[str]()
    keeper = Keeper(leases, 1.0, guardian)      # type: ignore[arg-type]
    sent = time.monotonic()
    lease = await leases.claim(ATTEMPT, record("ex1"))
    assert lease is not None
    holding = keeper.hold(ATTEMPT, lease, sent, lambda held, why: lost.append(why))
    first_deadline = holding.deadline

    await keeper._renew(holding)

    assert guardian.sent[0][1] == first_deadline and time.monotonic() > first_deadline
    assert holding.lost and lost == [holding.lost]


async def test_an_attempt_whose_end_the_executor_learns_after_its_deadline_is_run_again(settings, monkeypatch) -> None:
    """The step ended, but the executor's loop got to it only after the lease's deadline, when the guardian may have
    killed it: what it saw is not the step's own outcome. It records nothing; the attempt is taken over as
    interrupted and run again."""
    settings = replace(settings, lease_seconds=1.0)
    real, busy = work_module.run_action, [True]

    async def then_busy(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        if busy.pop() if busy else False:      # the first attempt only
            time.sleep(settings.lease_seconds)  # noqa: ASYNC251 -- a busy loop, on purpose
        return result
    monkeypatch.setattr(work_module, "run_action", then_busy)

    async with running_engine(settings) as engine:
        reply = await engine.send(StartRun(playbook=playbook_yaml([{"id": "a", "action": "noop"}])))
        events = await wait_for_end(engine, reply.run_id)

    assert type(events[-1]).__name__ == "RunCompleted"
    ends = [(e.attempt, type(e).__name__, getattr(e, "category", "")) for e in events
            if isinstance(e, (StepFailed, StepSucceeded))]
    assert ends == [(1, "StepFailed", "interrupted"), (2, "StepSucceeded", "")]


async def test_a_takeover_that_cannot_record_the_interruption_lets_the_lease_lapse_and_is_done_again(
        settings, monkeypatch) -> None:
    """The store did not answer as the taker recorded the attempt interrupted: it used to release the lease it
    had taken, so no one took it over again and the step stayed running for ever. The lease now lapses, and the
    next takeover records it."""
    from services.errors import EngineUnavailable
    from services.executor import takeover as takeover_module
    settings = replace(settings, lease_seconds=1.0)
    real, busy = work_module.run_action, [True]

    async def then_busy(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        if busy.pop() if busy else False:      # the first attempt only: its holder loses the lease
            time.sleep(settings.lease_seconds)  # noqa: ASYNC251 -- a busy loop, on purpose
        return result
    monkeypatch.setattr(work_module, "run_action", then_busy)
    decide, outage = takeover_module.decide, [True]

    def unavailable_once(*args: Any, **kwargs: Any) -> Any:
        if outage.pop() if outage else False:
            raise EngineUnavailable("the store is full (simulated)")
        return decide(*args, **kwargs)
    monkeypatch.setattr(takeover_module, "decide", unavailable_once)

    async with running_engine(settings) as engine:
        reply = await engine.send(StartRun(playbook=playbook_yaml([{"id": "a", "action": "noop"}])))
        events = await wait_for_end(engine, reply.run_id, timeout=20)
    assert not outage, "the takeover met the outage"
    ends = [(e.attempt, type(e).__name__, getattr(e, "category", "")) for e in events
            if isinstance(e, (StepFailed, StepSucceeded))]
    assert ends == [(1, "StepFailed", "interrupted"), (2, "StepSucceeded", "")]
