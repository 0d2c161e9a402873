"""The projector resumes from its snapshot: a restart reads only what is new."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec
import pytest

from events import subjects
from events.codec import encode
from events.run import RunCompleted, RunPaused, StepScheduled, StepStarted, StepSucceeded
from projections.projector import SNAPSHOT_EVERY_SECONDS, Projector
from projections.run_list import as_dict
from services.store import EventStore
from tests.helpers import T0, noop, started
from ui.client import EngineClient

pytestmark = pytest.mark.integration


async def record_runs(nc, first: int, count: int) -> int:
    """`count` finished runs of 3 steps, 11 events each, published as fast as the server takes them."""
    js = nc.jetstream()
    playbook = [noop("a"), noop("b"), noop("c")]
    published = 0
    for n in range(first, first + count):
        run_id = f"r{n}"
        events = [started(run_id, playbook)]
        for step in "abc":
            events += [StepScheduled(run_id=run_id, at=T0, step_id=step, attempt=1),
                       StepStarted(run_id=run_id, at=T0, step_id=step, attempt=1, executor="x"),
                       StepSucceeded(run_id=run_id, at=T0 + timedelta(seconds=1), step_id=step, attempt=1,
                                     duration_ms=1000.0)]
        events.append(RunCompleted(run_id=run_id, at=T0 + timedelta(seconds=3)))
        acks = [js.publish(subjects.run_event(run_id, type(e).__name__), encode(e)) for e in events]
        await asyncio.gather(*acks)
        published += len(events)
    return published


async def test_a_restart_reads_only_the_new_events_and_agrees_with_a_full_rebuild(nc, tmp_path) -> None:
    await EventStore(nc).ensure_stream()
    snapshot = tmp_path / "views.msgpack"
    assert await record_runs(nc, 0, 1000) == 11_000

    first = Projector(nc, snapshot)
    await first.start()
    await first.wait_caught_up(60)
    assert first.applied == 11_000 and len(first.views.runs) == 1000
    await first.stop()
    assert snapshot.exists()

    new = await record_runs(nc, 1000, 5)
    second = Projector(nc, snapshot)
    await second.start()
    await second.wait_caught_up(30)
    assert second.applied == new == 55                          # only what was recorded since
    assert len(second.views.runs) == 1005 and second.views.runs["r1004"].status == "completed"

    fresh = Projector(nc)                                        # no snapshot: every event again
    await fresh.start()
    await fresh.wait_caught_up(60)
    assert fresh.applied == 11_055
    assert msgspec.to_builtins(fresh.views) == msgspec.to_builtins(second.views)

    rebuilt = await second.rebuild()                             # on demand, for an audit
    assert (rebuilt["events"], rebuilt["runs"]) == (11_055, 1005)
    await asyncio.gather(second.stop(), fresh.stop())


async def test_a_snapshot_from_another_stream_is_not_trusted(nc, tmp_path) -> None:
    store = EventStore(nc)
    await store.ensure_stream()
    snapshot = tmp_path / "views.msgpack"
    await record_runs(nc, 0, 2)
    projector = Projector(nc, snapshot)
    await projector.start()
    await projector.wait_caught_up(10)
    await projector.stop()

    await nc.jetstream().delete_stream(subjects.RUNS_STREAM)      # the engine's data was wiped
    await store.ensure_stream()
    await record_runs(nc, 10, 1)
    again = Projector(nc, snapshot)
    await again.start()
    await again.wait_caught_up(10)
    assert set(again.views.runs) == {"r10"} and again.applied == 11
    await again.stop()


async def test_an_undecodable_message_is_skipped_not_fatal(nc, tmp_path) -> None:
    await EventStore(nc).ensure_stream()
    await nc.jetstream().publish(subjects.run_event("junk", "RunStarted"), b"{not json")
    await record_runs(nc, 0, 1)
    projector = Projector(nc)
    await projector.start()
    await projector.wait_caught_up(10)
    assert set(projector.views.runs) == {"r0"} and projector.position == 12
    await projector.stop()


async def test_a_large_view_is_snapshotted_at_a_pace_its_size_sets(nc, tmp_path) -> None:
    """Views hold every run kept, so after a week of runs they are hundreds of MB: rewritten whole every 5 s,
    that was most of a terabyte of disk writes a day, and an event-loop stall (the executor's lease renewals
    share it) at each one. Snapshots are paced by their size: the bytes written per hour stay bounded."""
    await EventStore(nc).ensure_stream()
    snapshot = tmp_path / "views.msgpack"
    await record_runs(nc, 0, 300)
    rate = 8 * 1024                                  # bytes a second, on average, small to keep the test small
    projector = Projector(nc, snapshot, snapshot_rate=rate)
    await projector.start()
    await projector.wait_caught_up(30)
    await projector.stop()                           # a stop saves, whatever the pace
    size = snapshot.stat().st_size
    assert size > SNAPSHOT_EVERY_SECONDS * rate      # big enough for the pace to matter

    written, ticks = 0, 120                          # ten minutes of ticks, the views changing before each
    for tick in range(1, ticks + 1):
        projector.views.position += 1
        before = snapshot.stat().st_mtime_ns
        await projector.save_if_due(now=tick * SNAPSHOT_EVERY_SECONDS)
        if snapshot.stat().st_mtime_ns != before:
            written += snapshot.stat().st_size
    assert 0 < written <= ticks * SNAPSHOT_EVERY_SECONDS * rate + size   # was ticks * size: every tick


async def test_a_clients_run_list_read_kind_by_kind_agrees_with_the_projector(nc) -> None:
    """`playbook list` (and MCP's list of runs) reads each kind of the list's events by a consumer of its own
    (one consumer of 15 filters was served ever slower as the stream held more subjects: 80 s for 2,000 runs),
    merged in stream order: the list is the projector's, kinds that interleave included."""
    await EventStore(nc).ensure_stream()
    js, playbook = nc.jetstream(), [noop("a"), noop("b"), noop("c")]
    events = [e for n in range(200) for e in (
        started(f"r{n}", playbook),
        *(e for step in "abc" for e in (
            StepScheduled(run_id=f"r{n}", at=T0, step_id=step, attempt=1),
            StepStarted(run_id=f"r{n}", at=T0, step_id=step, attempt=1, executor="x"),
            StepSucceeded(run_id=f"r{n}", at=T0, step_id=step, attempt=1, duration_ms=1.0))),
        *([RunPaused(run_id=f"r{n}", at=T0, actor="ops")] if n % 3 == 0 else []),
        RunCompleted(run_id=f"r{n}", at=T0))]
    for event in events:            # one by one: the stream's order is the list's
        await js.publish(subjects.run_event(event.run_id, type(event).__name__), encode(event))
    projector = Projector(nc)
    await projector.start()
    await projector.wait_caught_up(30)
    listed = await EngineClient(nc).list_runs()
    await projector.stop()
    assert len(listed) == 200
    assert {r.run_id: as_dict(r) for r in listed} == {k: as_dict(r) for k, r in projector.views.runs.items()}
