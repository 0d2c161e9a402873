"""Reading a stream in order, each message once, through consumers the reader names.

Readers (the CLI, the web, agents) may create consumers only by name (see
services/identity/nats_users.py), and nats-py's ordered consumer recreates its
consumer under the same name from a new position, which the server refuses. So this
reader does it by hand: an ephemeral push consumer under a fresh name, acknowledging
nothing; on a gap (a missed delivery, a silent server) it starts a new one after the
last message it yielded.
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from events import subjects
from events.codec import not_scheduled_by_engine, stored_event
from events.run import RunEvent
from services.jetstream import persist

HEARTBEAT = 5.0               # seconds; three missed in a row and the reader starts again
FORGOTTEN_AFTER = 60.0        # the server drops a consumer its reader left this long ago


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored message, as the reader met it."""

    seq: int                  # its stream sequence
    pending: int              # messages on the reader's subjects stored after it, when it was delivered
    subject: str
    data: bytes
    headers: dict[str, str] | None = None


async def in_order(nc: NATS, stream: str, filters: Sequence[str], after: int = 0, *,
                   prefix: str = "reader", heartbeat: float = HEARTBEAT) -> AsyncGenerator[Stored]:
    """Every message on `filters` stored after sequence `after`, in order and once each, then
    live ones as they are stored; endless (the caller stops reading). Raises nats' NotFoundError
    when there is no such stream."""
    last = after
    while True:
        name = f"{prefix}-{os.urandom(8).hex()}"
        sub = await nc.subscribe(nc.new_inbox(), pending_msgs_limit=-1, pending_bytes_limit=-1)
        try:
            config = ConsumerConfig(
                name=name, deliver_subject=sub.subject, ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last + 1,
                filter_subjects=list(filters), flow_control=True, idle_heartbeat=heartbeat,
                mem_storage=True, num_replicas=1, inactive_threshold=FORGOTTEN_AFTER)
            # Asked again through an election (the same name and configuration: a create that landed is no harm).
            await persist(functools.partial(nc.jetstream().add_consumer, stream, config), f"reading {stream}")
            async for stored in _deliveries(nc, sub, heartbeat):
                last = stored.seq
                yield stored
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_consumer(stream, name)


async def _deliveries(nc: NATS, sub: Subscription, heartbeat: float) -> AsyncGenerator[Stored]:
    """One consumer's deliveries until the first sign of a gap (then the caller starts afresh)."""
    delivered = 0
    while True:
        try:
            msg = await sub.next_msg(timeout=heartbeat * 3)
        except TimeoutError:
            return            # not even a heartbeat: the consumer is gone
        headers = msg.headers or {}
        if "Status" in headers:
            if headers["Status"] != "100":
                return        # the consumer was deleted or stalled
            if msg.reply:     # flow control: the server waits for this answer
                await nc.publish(msg.reply, b"")
            elif int(headers.get("Nats-Last-Consumer", delivered)) != delivered:
                return        # a heartbeat that counts deliveries we never got
            continue
        meta = msg.metadata
        if meta.sequence.consumer != delivered + 1:
            return
        delivered += 1
        yield Stored(meta.sequence.stream, meta.num_pending, msg.subject, msg.data, msg.headers)


async def run_events(nc: NATS, run_id: str, after: int = 0) -> AsyncGenerator[tuple[int, RunEvent, int]]:
    """The run's events stored after sequence `after`, then live ones, endless: each with its
    sequence and how many more of the run's events were stored when it was read."""
    reader = in_order(nc, subjects.RUNS_STREAM, [subjects.run_all(run_id)], after, prefix="run")
    async with contextlib.aclosing(reader):
        async for stored in reader:
            # An event this version cannot decode comes as `Unreadable`: shown, quarantined by the fold.
            yield stored.seq, stored_event(stored.subject, stored.data, not_scheduled_by_engine(stored.headers)), \
                stored.pending
