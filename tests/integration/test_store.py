"""The event store against a real nats-server: OCC, lost acks, fast loads."""
from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from events import subjects
from events.commands import PauseRun
from events.run import ApprovalRejected, RunEvent, RunPaused, StepScheduled
from services.errors import CommandRejected, ConcurrencyConflict
from services.domain.run.commands import Advance, AnswerGate, BeginStep, FinishStep
from services.domain.run.decider import decide
from services.aggregates import RUNS, run_repository
from services.domain.run import state
from services.domain.run.state import Run
from services.repository import Repository
from services.playbook_store import PlaybookStore
from services.store import EventStore
from tests.helpers import at, noop, started

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(nc) -> EventStore:
    store = EventStore(nc)
    await store.ensure_stream()
    return store


async def test_ensure_stream_is_idempotent_and_enables_timers(store: EventStore, nc) -> None:
    await store.ensure_stream()
    info = await nc.jetstream().stream_info(subjects.RUNS_STREAM)
    assert info.config.allow_direct
    assert info.config.allow_msg_schedules


async def test_append_then_load_gives_back_the_same_events(store: EventStore) -> None:
    opening = started("r1", [noop("a"), noop("b")])
    first = StepScheduled(run_id="r1", at=at(1), step_id="a", attempt=1)
    seqs = await store.append("r1", [opening, first], expected=0)
    envelopes, last = await store.load("r1")
    assert [e for _, e in envelopes] == [opening, first]
    assert [s for s, _ in envelopes] == seqs
    assert last == seqs[-1]


async def test_an_append_on_a_stale_version_is_a_conflict(store: EventStore) -> None:
    (seq,) = await store.append("r1", [started("r1", [noop("a")])], expected=0)
    await store.append("r1", [RunPaused(run_id="r1", at=at(1), actor="bob")], expected=seq)
    with pytest.raises(ConcurrencyConflict):
        await store.append("r1", [RunPaused(run_id="r1", at=at(2), actor="carol")], expected=seq)
    with pytest.raises(ConcurrencyConflict):
        await store.append("r1", [started("r1", [noop("a")])], expected=0)


async def test_the_check_covers_every_subject_of_the_run_and_no_other_run(store: EventStore) -> None:
    (a,) = await store.append("ra", [started("ra", [noop("x")])], expected=0)
    await store.append("rb", [started("rb", [noop("x")])], expected=0)
    # Another run's append does not make ours stale:
    await store.append("ra", [RunPaused(run_id="ra", at=at(1), actor="bob")], expected=a)


async def test_concurrent_deciders_resolve_by_reloading_and_deciding_again(store: EventStore) -> None:
    await store.append("r1", [started("r1", [noop("a")])], expected=0)
    one, two = run_repository(store, PlaybookStore(store.nc)), run_repository(store, PlaybookStore(store.nc))
    await one.get("r1"), await two.get("r1")   # both hold version 1
    pause_by = lambda who: (lambda run: decide(run, PauseRun(run_id="r1", actor=who), at(1)))  # noqa: E731
    _, first = await one.change("r1", pause_by("bob"))
    _, second = await two.change("r1", pause_by("carol"))   # conflicts, reloads: already paused
    assert [type(e) for e in first] == [RunPaused]
    assert second == []
    envelopes, _ = await store.load("r1")
    assert [type(e).__name__ for _, e in envelopes] == ["RunStarted", "RunPaused"]


async def test_a_lost_ack_is_recognised_as_our_own_append(store: EventStore, monkeypatch) -> None:
    (seq,) = await store.append("r1", [started("r1", [noop("a")])], expected=0)
    real_publish = store.js.publish
    dropped = []

    async def publish_but_lose_the_ack(*args, **kwargs):
        ack = await real_publish(*args, **kwargs)
        if not dropped:
            dropped.append(ack.seq)
            raise TimeoutError   # stored, but the ack never reached us
        return ack

    monkeypatch.setattr(store.js, "publish", publish_but_lose_the_ack)
    (appended,) = await store.append("r1", [RunPaused(run_id="r1", at=at(1), actor="bob")], expected=seq)
    assert appended == dropped[0]
    envelopes, _ = await store.load("r1")
    assert [type(e).__name__ for _, e in envelopes] == ["RunStarted", "RunPaused"]   # stored once


async def test_a_lost_ack_after_someone_else_appended_is_still_a_conflict(store: EventStore, monkeypatch) -> None:
    (seq,) = await store.append("r1", [started("r1", [noop("a")])], expected=0)
    real_publish = store.js.publish
    calls = []

    async def lose_our_publish_while_another_lands(subject, payload, headers=None, **kwargs):
        calls.append(subject)
        if len(calls) == 1:   # our publish never arrives; someone else's does
            await real_publish(subjects.run_event("r1", "RunPaused"),
                               b'{"type":"RunPaused","run_id":"r1","at":"2026-01-01T12:00:01Z","actor":"carol"}',
                               headers={"Nats-Expected-Last-Subject-Sequence": str(seq),
                                        "Nats-Expected-Last-Subject-Sequence-Subject": subjects.run_all("r1")})
            raise TimeoutError
        return await real_publish(subject, payload, headers=headers, **kwargs)

    monkeypatch.setattr(store.js, "publish", lose_our_publish_while_another_lands)
    with pytest.raises(ConcurrencyConflict):
        await store.append("r1", [RunPaused(run_id="r1", at=at(1), actor="bob")], expected=seq)


async def test_a_run_of_a_thousand_events_loads_whole_and_in_order(store: EventStore) -> None:
    steps = [noop(f"s{i}") for i in range(10)]
    (version,) = await store.append("big", [started("big", steps)], expected=0)
    await store.append("other", [started("other", steps)], expected=0)
    expected_attempts = []
    for i in range(1, 1000):
        # Interleave another run's events: loading must pick only this run's.
        if i % 10 == 0:
            await store.js.publish(subjects.run_event("other", "Noise"), b"{}")
        event = StepScheduled(run_id="big", at=at(i), step_id=f"s{i % 10}", attempt=i)
        (version,) = await store.append("big", [event], expected=version)
        expected_attempts.append(i)
    envelopes, last = await store.load("big")
    assert len(envelopes) == 1000
    assert [e.attempt for _, e in envelopes[1:]] == expected_attempts
    assert last == version
    seqs = [s for s, _ in envelopes]
    assert seqs == sorted(seqs)


async def test_an_undecodable_message_is_loaded_as_unreadable_and_counted(store: EventStore) -> None:
    (seq,) = await store.append("r1", [started("r1", [noop("a")])], expected=0)
    ack = await store.js.publish(subjects.run_event("r1", "Garbage"), b"not json")
    envelopes, last = await store.load("r1")
    assert [(s, type(e).__name__, getattr(e, "stored_type", None)) for s, e in envelopes] == [
        (seq, "RunStarted", None), (ack.seq, "Unreadable", "Garbage")]   # shown by every reader, not skipped unseen
    assert last == ack.seq   # appends must expect the garbage's sequence, or they would always conflict
    await store.append("r1", [RunPaused(run_id="r1", at=at(1), actor="bob")], expected=last)


async def test_a_repository_keeps_at_most_its_capacity_and_no_lock_nobody_holds(store: EventStore) -> None:
    runs = run_repository(store, PlaybookStore(store.nc), capacity=2)
    for run_id in ("r1", "r2", "r3"):
        await runs.create(run_id, started(run_id, [noop("a")]))
    pause = lambda run: decide(run, PauseRun(run_id=run.id, actor="bob"), at(1))  # noqa: E731
    results = await asyncio.gather(*(runs.change(run_id, pause) for run_id in ("r1", "r1", "r2", "r3")))
    assert sorted(len(events) for _, events in results) == [0, 1, 1, 1]   # r1 paused once, by one of the two
    assert len(runs._cache) <= 2 and not runs._locks
    assert (await runs.get("r1")).status == "paused"                    # an evicted run is loaded again


async def test_a_replica_whose_cache_is_behind_accepts_the_approval_another_replica_made_possible(
        store: EventStore) -> None:
    opening = started("r1", [noop("build"), noop("deploy", approval_gate={"message": "ship?"})])
    playbooks = PlaybookStore(store.nc)
    command_service, executor = run_repository(store, playbooks), run_repository(store, playbooks)
    await command_service.create("r1", opening)
    await command_service.change("r1", lambda run: decide(run, Advance(), at(1)))   # cached: build scheduled
    # Another process runs `build`, which opens the gate; the command service hears nothing of it.
    build = (await executor.get("r1")).steps["build"].attempt
    begin = BeginStep(step_id="build", attempt=1, scheduled_seq=build.scheduled_seq, executor="ex1")
    await executor.change("r1", lambda run: decide(run, begin, at(2)))
    finish = FinishStep(step_id="build", attempt=1, outputs={}, duration_ms=1.0)
    _, opened = await executor.change("r1", lambda run: decide(run, finish, at(3)))
    assert "ApprovalRequested" in [type(e).__name__ for e in opened]

    approve = AnswerGate(step_id="deploy", actor="bob", groups=(), approve=True)
    _, events = await command_service.change("r1", lambda run: decide(run, approve, at(5)))
    assert [type(e).__name__ for e in events][:2] == ["ApprovalGiven", "ApprovalGranted"]


async def test_a_refusal_on_everything_the_store_holds_stands(store: EventStore) -> None:
    await store.append("r1", [started("r1", [noop("build"), noop("deploy", approval_gate={"message": "ship?"})])],
                       expected=0)
    approve = AnswerGate(step_id="deploy", actor="bob", groups=(), approve=True)
    with pytest.raises(CommandRejected, match="not waiting for approval"):
        await run_repository(store, PlaybookStore(store.nc)).change("r1", lambda run: decide(run, approve, at(5)))


async def test_a_new_aggregate_folds_its_first_event_off_the_event_loop_and_later_ones_on_it(
        store: EventStore) -> None:
    """A run's first event carries its playbook (10,000 steps take ~75 ms to fold): the loop answers meanwhile."""
    folded_on: list[tuple[str, bool]] = []

    def evolve(run: Run, event: RunEvent, seq: int = 0) -> Run:
        folded_on.append((type(event).__name__, threading.get_ident() == loop_thread))
        return state.evolve(run, event, seq)

    loop_thread = threading.get_ident()
    runs = Repository(store, dataclasses.replace(RUNS, evolve=evolve), prepare=PlaybookStore(store.nc).resolved)
    await runs.create("r1", started("r1", [noop("a")]))
    await runs.change("r1", lambda run: decide(run, Advance(), at(1)))
    assert folded_on == [("RunStarted", False), ("StepScheduled", True)]
    assert (await runs.get("r1")).steps["a"].status == "scheduled"


class AnotherWriterAfter(EventStore):
    """The store as one writer sees it, with another writer appending right after this one's `after`th append
    (an advancer that reacts to what was just stored, in between two events of one decision)."""

    def __init__(self, store: EventStore, after: int, meanwhile) -> None:
        super().__init__(store.nc)
        self.after, self.meanwhile, self.appends = after, meanwhile, 0

    async def append_aggregate(self, *args, **kwargs):
        sequences = await super().append_aggregate(*args, **kwargs)
        self.appends += 1
        if self.appends == self.after:
            await self.meanwhile()
        return sequences


async def test_a_command_whose_first_events_are_stored_is_accepted_when_another_writer_appends_the_rest(
        store: EventStore) -> None:
    """Seen with the run service's replicas on a cluster: an approval recorded and granted, then answered as
    refused ("its gate is granted", and an ApprovalAttemptRefused in the run) because the advancer scheduled the
    step first and the approval was decided again on a state holding its own events."""
    playbooks = PlaybookStore(store.nc)
    advancer = run_repository(store, playbooks)
    await advancer.create("r1", started("r1", [noop("deploy", approval_gate={"message": "ship?"})]))
    await advancer.change("r1", lambda run: decide(run, Advance(), at(1)))          # the gate asks
    racing = AnotherWriterAfter(store, after=2, meanwhile=lambda: advancer.change(
        "r1", lambda run: decide(run, Advance(), at(6))))
    command_service = run_repository(racing, playbooks)
    approve = AnswerGate(step_id="deploy", actor="bob", groups=(), approve=True)
    _, events = await command_service.change("r1", lambda run: decide(run, approve, at(5)))
    assert [type(e).__name__ for e in events][:2] == ["ApprovalGiven", "ApprovalGranted"]
    stored = [type(e).__name__ for _, e in (await store.load("r1"))[0]]
    assert "ApprovalAttemptRefused" not in stored and stored.count("StepScheduled") == 1, stored


async def test_a_decision_another_replica_finished_half_way_is_answered_with_what_it_stored(store, nc) -> None:
    """Replica A rejects a gate; between its ApprovalRejected and its StepFailed, replica B's advancer fails the
    step. A's rejection is stored and counts: A answers with it, not with a refusal of the gate it decided."""
    await store.append("r9", [started("r9", [noop("deploy", approval_gate={})])], expected=0)
    replica_b = run_repository(store, PlaybookStore(nc))
    await replica_b.change("r9", lambda run: decide(run, Advance(), at(1)))

    class BetweenTheAppends(EventStore):
        async def append_aggregate(self, aggregate, events, expected, cancel_timer=None):   # type: ignore[override]
            sequences = await super().append_aggregate(aggregate, events, expected, cancel_timer)
            if isinstance(events[0], ApprovalRejected):
                await replica_b.change("r9", lambda run: decide(run, Advance(), at(3)), min_version=sequences[-1])
            return sequences

    replica_a = run_repository(BetweenTheAppends(nc), PlaybookStore(nc))
    reject = AnswerGate(step_id="deploy", actor="carol", groups=(), approve=False, comment="not now")
    _, appended = await replica_a.change("r9", lambda run: decide(run, reject, at(2)))

    assert [type(e).__name__ for e in appended] == ["ApprovalRejected"]
    envelopes, _ = await store.load("r9")
    stored = [type(e).__name__ for _, e in envelopes]
    assert stored == ["RunStarted", "ApprovalRequested", "ApprovalRejected", "StepFailed", "RunFailed"]
