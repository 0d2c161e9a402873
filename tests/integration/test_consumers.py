"""The services' consumer loop against a real nats-server: a message that always fails is given up, on the record."""
from __future__ import annotations

from dataclasses import replace

import pytest

from events import subjects
from events.run import MessageAbandoned
from projections.audit import audit_entry
from services.aggregates import run_repository
from services.runtime import run_consumer
from services.settings import Settings
from services.playbook_store import PlaybookStore
from services.store import EventStore
from tests.helpers import noop, started, until

pytestmark = pytest.mark.integration


async def test_a_message_that_always_fails_is_tried_max_deliver_times_then_abandoned_on_the_record(nc) -> None:
    store = EventStore(nc)
    await store.ensure_stream()
    runs = run_repository(store, PlaybookStore(store.nc))
    await runs.create("r1", started("r1", [noop("a")]))
    deliveries: list[int] = []

    async def broken(msg, event, seq) -> None:
        deliveries.append(seq)
        raise ValueError("this handler cannot cope")

    consumer = run_consumer(runs, replace(Settings(), max_deliver=3), "doomed", [subjects.events_of_type("RunStarted")],
                            broken, retry_delay=0.05)
    await consumer.start()
    try:
        async def abandoned() -> list[MessageAbandoned]:
            events, _ = await store.load("r1")
            return [e for _, e in events if isinstance(e, MessageAbandoned)]
        [record] = await until(abandoned, what="the abandonment recorded")
        info = await nc.jetstream().consumer_info(store.stream, "doomed")
    finally:
        await consumer.stop()
    assert len(deliveries) == 3 and info.num_ack_pending == 0 and info.num_pending == 0
    assert (record.consumer, record.seq, record.deliveries) == ("doomed", deliveries[0], 3)
    assert record.error == "ValueError: this handler cannot cope"
    entry = audit_entry(99, record)
    assert entry is not None and (entry.actor, entry.action, entry.run_id) == ("system", "abandoned", "r1")
    assert "doomed gave up on message" in entry.detail and "after 3 deliveries" in entry.detail


async def test_an_unreadable_message_is_abandoned_at_once_and_recorded(nc) -> None:
    store = EventStore(nc)
    await store.ensure_stream()
    runs = run_repository(store, PlaybookStore(store.nc))
    await runs.create("r1", started("r1", [noop("a")]))
    seen: list[int] = []

    async def handle(msg, event, seq) -> None:
        seen.append(seq)

    consumer = run_consumer(runs, Settings(), "reader", [subjects.events_of_type("StepFailed")], handle)
    await consumer.start()
    try:
        garbage = await nc.jetstream().publish(subjects.run_event("r1", "StepFailed"), b"{not json")

        async def abandoned() -> list[MessageAbandoned]:
            events, _ = await store.load("r1")
            return [e for _, e in events if isinstance(e, MessageAbandoned)]
        [record] = await until(abandoned, what="the unreadable message recorded")
    finally:
        await consumer.stop()
    assert not seen and (record.seq, record.deliveries) == (garbage.seq, 1)
    assert record.error.startswith("cannot read it: ")
