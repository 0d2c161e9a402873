"""The JetStream event store: the only module that knows NATS headers (their failures: services/jetstream.py).

A run's subjects `pb.run.<id>.>` are its aggregate. Appends carry the sequence of the
last event the writer saw (optimistic concurrency over every subject of the run) and
a `Nats-Msg-Id`, so a publish retried after a lost ack or through a leader election is
recognised as ours. Reads may be answered by any replica, one that lags included: a
reader that knows how far the aggregate reached asks again until it is shown that far.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError

from events import subjects
from events.codec import decode_event, encode, event_name, held_to, stored_event
from events.json_limits import MAX_EVENT_DEPTH, check_depth
from events.run import RunEvent
from services.errors import ConcurrencyConflict, EngineUnavailable, TooLarge
from services.jetstream import (
    DIRECT_TRY, TRY_TIMEOUT, Unanswered, conflict_last, ensure_stream, is_conflict, last_message, persist,
)

log = logging.getLogger(__name__)

LOAD_BATCH = 1000             # events per direct-get request when loading a run
HEADROOM = 1024               # bytes of a message's room that subject and headers may take

Envelope = tuple[int, RunEvent]   # (stream sequence, event)
E = TypeVar("E")


class _Cursor(Generic[E]):
    """How far a load has read: what it collected, and the last sequence seen (tries resume after it)."""

    def __init__(self, into: list[tuple[int, E]], last: int, decode: Callable[[bytes], E],
                 unreadable: Callable[[str, bytes, str], E] | None) -> None:
        self.into, self.last, self.decode, self.unreadable = into, last, decode, unreadable


class _Batch:
    """One direct-get request: its replies go to the cursor until the server says the batch is done."""

    def __init__(self, cursor: _Cursor[Any]) -> None:
        self.cursor = cursor
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.heard = False

    def unheard(self) -> None:
        """No replica began to answer in DIRECT_TRY: ask again (a frozen replica never answers)."""
        if not self.heard and not self.done.done():
            self.done.set_exception(Unanswered("no replica answered a direct get"))


class EventStore:
    def __init__(self, nc: NATS, stream: str = subjects.RUNS_STREAM) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=TRY_TIMEOUT)
        self.stream = stream
        self._direct_get = f"$JS.API.DIRECT.GET.{stream}"
        # Direct-get replies come to one long-lived subscription, a token per load.
        self._reply_prefix = nc.new_inbox()
        self._replies: Subscription | None = None
        self._batches: dict[str, _Batch] = {}

    @property
    def max_event_bytes(self) -> int:
        """The largest event an append takes: one message, as big as the server allows, less its headers."""
        return self.nc.max_payload - HEADROOM

    async def ensure_stream(self, replicas: int = 1) -> None:
        """Create `PB_RUNS` (and the readiness probe's stream), or bring their configuration up to date. Idempotent."""
        await self._ensure(self.stream, {
            "subjects": [subjects.RUN_SUBJECTS, subjects.TIMER_SUBJECTS, subjects.CIRCUIT_SUBJECTS],
            "storage": "file",
            "retention": "limits",
            "num_replicas": replicas,
            "allow_direct": True,
            "allow_msg_schedules": True,
            "allow_atomic": True,
            "duplicate_window": 120_000_000_000,
            # Plain subscribers see every run event as stored, those fired by a schedule too.
            "republish": {"src": subjects.RUN_SUBJECTS, "dest": subjects.RUN_FEED_SUBJECTS},
        })
        await self._ensure(subjects.PROBE_STREAM, {
            "subjects": [subjects.PROBE_SUBJECT], "storage": "file", "num_replicas": replicas, "max_msgs": 1,
            "discard": "old", "duplicate_window": 1_000_000_000,
        })

    async def _ensure(self, name: str, config: dict[str, Any]) -> None:
        await ensure_stream(self.nc, {"name": name, **config})

    async def load(self, run_id: str, after: int = 0) -> tuple[list[Envelope], int]:
        """Every event of the run after stream sequence `after`, and the last sequence seen.

        Batched direct gets: one request returns up to LOAD_BATCH events, so a run of
        thousands of events loads in a few round trips. An event this version cannot decode
        is logged and loaded as `Unreadable` (the fold quarantines it, every view shows it).
        """
        return await self.load_aggregate(subjects.run_all(run_id), decode_event, after, unreadable=stored_event)

    async def load_aggregate(self, subject: str, decode: Callable[[bytes], E], after: int = 0,
                             at_least: int = 0, batch: int = LOAD_BATCH,
                             unreadable: Callable[[str, bytes, str], E] | None = None,
                             ) -> tuple[list[tuple[int, E]], int]:
        """Every message on `subject` (an aggregate's wildcard) after sequence `after`, decoded, `batch`
        messages per round trip.

        An undecodable message is logged, and loaded as `unreadable(subject, data, why)` says, or skipped
        without it; its sequence counts either way (appends must expect it).

        `at_least`: a sequence of this aggregate the caller knows is stored; a replica that
        has not applied it yet is asked again (through `persist`) until one has.
        """
        cursor = _Cursor([], after, decode, unreadable)

        async def read() -> None:
            while await self._load_batch(subject, cursor, batch):
                pass
            if cursor.last < at_least:
                raise Unanswered(f"a replica of {self.stream} answered from before sequence {at_least}")

        await persist(read, f"reading {subject}")
        return cursor.into, cursor.last

    async def _load_batch(self, subject: str, cursor: _Cursor[Any], size: int) -> int:
        """One direct-get batch into the cursor; returns how many events are still pending after it."""
        batch = _Batch(cursor)
        token = os.urandom(8).hex()
        self._batches[token] = batch
        try:
            if self._replies is None:
                self._replies = await self.nc.subscribe(f"{self._reply_prefix}.*", cb=self._on_reply)
            request = json.dumps({"seq": cursor.last + 1, "next_by_subj": subject, "batch": size}).encode()
            await self.nc.publish(self._direct_get, request, reply=f"{self._reply_prefix}.{token}")
            silence = asyncio.get_running_loop().call_later(DIRECT_TRY, batch.unheard)
            try:
                return await asyncio.wait_for(batch.done, TRY_TIMEOUT)
            finally:
                silence.cancel()
        finally:
            del self._batches[token]

    async def _on_reply(self, msg: Msg) -> None:
        batch = self._batches.get(msg.subject.rsplit(".", 1)[1])
        if batch is None or batch.done.done():
            return   # a late reply to a load that gave up
        batch.heard = True
        headers = msg.headers or {}
        status = headers.get("Status")
        cursor = batch.cursor
        if status == "404":          # nothing (more) on this subject
            batch.done.set_result(0)
        elif status == "204":        # end of this batch
            batch.done.set_result(int(headers.get("Nats-Num-Pending", "0")))
        elif status == "503":        # no replica of the stream to answer: the engine never ran here
            batch.done.set_exception(EngineUnavailable(
                f"no stream {self.stream} on this NATS server: start the engine with `playbook up`"))
        elif status == "408":        # the replica gave up on the request: ask again
            batch.done.set_exception(Unanswered(f"direct get: {status} {headers.get('Description', '')}"))
        elif status:
            batch.done.set_exception(RuntimeError(f"direct get failed: {status} {headers.get('Description', '')}"))
        else:
            seq = int(headers["Nats-Sequence"])
            if seq <= cursor.last:
                return   # a late reply of an earlier try, already read
            cursor.last = seq
            subject = headers.get("Nats-Subject", "")
            try:
                decoded = cursor.decode(msg.data)
                if subject and isinstance(decoded, msgspec.Struct):
                    # An event held to its subject: a login may publish some of an aggregate's subjects only.
                    held_to(subject, decoded, headers)
                cursor.into.append((seq, decoded))
            except (msgspec.DecodeError, RecursionError) as err:
                if cursor.unreadable is None:
                    log.warning("skipping undecodable event %s seq %d: %s", subject, seq, err)
                    return
                log.warning("event %s seq %d is unreadable here, shown quarantined: %s", subject, seq, err)
                cursor.into.append((seq, cursor.unreadable(subject, msg.data, str(err))))

    async def last_on(self, subject: str) -> bytes | None:
        """The data of the last message on one subject, None when there is none."""
        msg = await last_message(self.nc, self.stream, subject, f"reading the last event on {subject}")
        return None if (msg.headers or {}).get("Status") else msg.data

    async def last_message_id(self, aggregate: str) -> tuple[int, str | None]:
        """Sequence and Nats-Msg-Id of the aggregate's last event (0, None when there is none)."""
        return await self.last_position(f"{aggregate}.>")

    async def last_position(self, subject: str) -> tuple[int, str | None]:
        """Sequence and Nats-Msg-Id of the last message on `subject` (wildcards allowed); (0, None) for none."""
        msg = await last_message(self.nc, self.stream, subject, f"reading the last message on {subject}")
        headers = msg.headers or {}
        if headers.get("Status"):
            return 0, None
        return int(headers["Nats-Sequence"]), headers.get("Nats-Msg-Id")

    async def append(self, run_id: str, events: Sequence[RunEvent], expected: int) -> list[int]:
        """Append events in order after sequence `expected`; returns their sequences.

        Raises ConcurrencyConflict if the run moved on since `expected`. Events before
        the conflicting one stay appended: the caller reloads and decides again, and
        the decider's idempotence produces only what is still missing.
        """
        return await self.append_aggregate(subjects.run(run_id), events, expected)

    async def append_aggregate(self, aggregate: str, events: Sequence[msgspec.Struct], expected: int,
                               cancel_timer: str | None = None) -> list[int]:
        """Append to any aggregate: `aggregate` is its subject prefix (`pb.run.<id>`, ...).

        `cancel_timer`: a timer the first event makes pointless, purged in the same write;
        if the timer fired first, its event moved the aggregate on and the write conflicts.
        """
        sequences = []
        for event in events:
            expected = await self._append_one(aggregate, event, expected, cancel_timer)
            cancel_timer = None
            sequences.append(expected)
        return sequences

    async def schedule(self, timer: str, event: RunEvent, at: datetime, msg_id: str) -> None:
        """Store `event` on its run's subject at time `at`, even if every service is down then.

        A JetStream message schedule on subject `timer`: the server fires it, so it
        survives restarts of every process, NATS included. Publishing the same timer
        again (same `msg_id`) is harmless.
        """
        headers = {
            "Nats-Schedule": "@at " + at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "Nats-Schedule-Target": subjects.run_event(event.run_id, event_name(event)),
            "Nats-Msg-Id": msg_id,
        }
        payload = self._fitting(encode(event), f"the timer {timer}")
        await persist(lambda: self.js.publish(timer, payload, headers=headers), f"arming {timer}")

    async def _append_one(self, aggregate: str, event: msgspec.Struct, expected: int, cancel_timer: str | None) -> int:
        msg_id = os.urandom(12).hex()     # the same for every try: a stored try is answered as a duplicate
        headers = {
            "Nats-Msg-Id": msg_id,
            "Nats-Expected-Last-Subject-Sequence": str(expected),
            "Nats-Expected-Last-Subject-Sequence-Subject": f"{aggregate}.>",
        }
        if cancel_timer:
            headers["Nats-Schedule-Next"] = "purge"
            headers["Nats-Scheduler"] = cancel_timer
        subject = f"{aggregate}.{type(event).__name__}"
        payload = self._fitting(encode(event), f"{type(event).__name__} of {aggregate}")
        tries = 0

        async def publish() -> int:
            nonlocal tries
            tries += 1
            try:
                return (await self.js.publish(subject, payload, headers=headers)).seq
            except APIError as err:
                if not is_conflict(err):
                    raise
                if tries > 1:
                    # An earlier try may have been stored and its dedupe entry lost with a leader.
                    seq, last_id = await self.last_message_id(aggregate)
                    if last_id == msg_id:
                        return seq
                raise ConcurrencyConflict(aggregate, conflict_last(err)) from err

        return await persist(publish, f"appending {type(event).__name__} to {aggregate}")

    def _fitting(self, payload: bytes, what: str) -> bytes:
        """The payload, if NATS carries it and readers can follow its nesting; else TooLarge, saying which limit."""
        limit = self.max_event_bytes
        if len(payload) > limit:
            raise TooLarge(f"{what} is {len(payload):,} bytes; NATS carries at most {limit:,} "
                           f"(the server's max_payload, less {HEADROOM} for headers)")
        try:
            check_depth(payload, MAX_EVENT_DEPTH)
        except msgspec.DecodeError as err:
            raise TooLarge(f"{what}: {err}") from None
        return payload
