"""The JetStream event store: the only module that knows NATS headers and error codes.

A run's subjects `pb.run.<id>.>` are its aggregate. Appends carry the sequence of the
last event the writer saw (optimistic concurrency over every subject of the run) and
a `Nats-Msg-Id`, so a publish retried after a lost ack is recognised as ours.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import BadRequestError

from events import subjects
from events.codec import decode_event, encode, event_name
from events.run import RunEvent
from services.errors import ConcurrencyConflict, EngineUnavailable, EventTooLarge

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071   # someone appended to the run since we loaded it
STREAM_NAME_IN_USE = 10058    # the stream exists with another configuration
LOAD_BATCH = 1000             # events per direct-get request when loading a run
PUBLISH_TIMEOUT = 5.0
PUBLISH_TRIES = 3
HEADER_ROOM = 1024            # of a message's max payload, kept for its headers

Envelope = tuple[int, RunEvent]   # (stream sequence, event)
E = TypeVar("E")


class _Batch:
    """Where one direct-get batch collects its events until the server says it is done."""

    def __init__(self, into: list[tuple[int, Any]], last: int, decode: Callable[[bytes], Any]) -> None:
        self.into, self.last, self.decode = into, last, decode
        self.done: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()


class EventStore:
    def __init__(self, nc: NATS, stream: str = subjects.RUNS_STREAM) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=PUBLISH_TIMEOUT)
        self.stream = stream
        self._direct_get = f"$JS.API.DIRECT.GET.{stream}"
        # Direct-get replies come to one long-lived subscription, a token per load.
        self._reply_prefix = nc.new_inbox()
        self._replies: Subscription | None = None
        self._batches: dict[str, _Batch] = {}

    @property
    def max_event_bytes(self) -> int:
        """The largest event an append takes: one message, as big as the server allows, less its headers."""
        return self.nc.max_payload - HEADER_ROOM

    async def ensure_stream(self, replicas: int = 1) -> None:
        """Create `PB_RUNS`, or bring its configuration up to date. Idempotent."""
        config = {
            "name": self.stream,
            "subjects": [subjects.RUN_SUBJECTS, subjects.TIMER_SUBJECTS, subjects.CIRCUIT_SUBJECTS],
            "storage": "file",
            "retention": "limits",
            "num_replicas": replicas,
            "allow_direct": True,
            "allow_msg_schedules": True,
            "allow_atomic": True,
            "duplicate_window": 120_000_000_000,
        }
        body = json.dumps(config).encode()
        reply = await self._api(f"$JS.API.STREAM.CREATE.{self.stream}", body)
        error = reply.get("error")
        if error and error.get("err_code") == STREAM_NAME_IN_USE:
            reply = await self._api(f"$JS.API.STREAM.UPDATE.{self.stream}", body)
            error = reply.get("error")
        if error:
            raise RuntimeError(f"cannot set up stream {self.stream}: {error.get('description')}")

    async def _api(self, subject: str, body: bytes) -> dict[str, Any]:
        msg = await self.nc.request(subject, body, timeout=PUBLISH_TIMEOUT)
        reply: dict[str, Any] = json.loads(msg.data)
        return reply

    async def load(self, run_id: str, after: int = 0) -> tuple[list[Envelope], int]:
        """Every event of the run after stream sequence `after`, and the last sequence seen.

        Batched direct gets: one request returns up to LOAD_BATCH events, so a run of
        thousands of events loads in a few round trips. An undecodable message is
        logged and skipped, but its sequence still counts (appends must expect it).
        """
        return await self.load_aggregate(subjects.run_all(run_id), decode_event, after)

    async def load_aggregate(self, subject: str, decode: Callable[[bytes], E],
                             after: int = 0) -> tuple[list[tuple[int, E]], int]:
        """Every message on `subject` (an aggregate's wildcard) after sequence `after`, decoded."""
        events: list[tuple[int, E]] = []
        last = after
        while True:
            pending, last = await self._load_batch(subject, last + 1, events, last, decode)
            if not pending:
                return events, last

    async def _load_batch(self, subject: str, start: int, into: list[tuple[int, Any]], last: int,
                          decode: Callable[[bytes], Any]) -> tuple[int, int]:
        """One direct-get batch into `into`; returns (events still pending, last sequence)."""
        batch = _Batch(into, last, decode)
        token = os.urandom(8).hex()
        self._batches[token] = batch
        try:
            if self._replies is None:
                self._replies = await self.nc.subscribe(f"{self._reply_prefix}.*", cb=self._on_reply)
            request = json.dumps({"seq": start, "next_by_subj": subject, "batch": LOAD_BATCH}).encode()
            await self.nc.publish(self._direct_get, request, reply=f"{self._reply_prefix}.{token}")
            return await asyncio.wait_for(batch.done, PUBLISH_TIMEOUT)
        finally:
            del self._batches[token]

    async def _on_reply(self, msg: Msg) -> None:
        batch = self._batches.get(msg.subject.rsplit(".", 1)[1])
        if batch is None or batch.done.done():
            return   # a late reply to a load that gave up
        headers = msg.headers or {}
        status = headers.get("Status")
        if status == "404":          # nothing (more) on this subject
            batch.done.set_result((0, batch.last))
        elif status == "204":        # end of this batch
            batch.done.set_result((int(headers.get("Nats-Num-Pending", "0")), batch.last))
        elif status == "503":        # no stream to answer: the engine never ran here
            batch.done.set_exception(EngineUnavailable(
                f"no stream {self.stream} on this NATS server: start the engine with `playbook up`"))
        elif status:
            batch.done.set_exception(RuntimeError(f"direct get failed: {status} {headers.get('Description', '')}"))
        else:
            batch.last = int(headers["Nats-Sequence"])
            try:
                batch.into.append((batch.last, batch.decode(msg.data)))
            except msgspec.DecodeError as err:
                log.warning("skipping undecodable event %s seq %d: %s", headers.get("Nats-Subject"), batch.last, err)

    async def last_on(self, subject: str) -> bytes | None:
        """The data of the last message on one subject, None when there is none."""
        request = json.dumps({"last_by_subj": subject}).encode()
        msg = await self.nc.request(self._direct_get, request, timeout=PUBLISH_TIMEOUT)
        return None if (msg.headers or {}).get("Status") else msg.data

    async def last_message_id(self, aggregate: str) -> tuple[int, str | None]:
        """Sequence and Nats-Msg-Id of the aggregate's last event (0, None when there is none)."""
        request = json.dumps({"last_by_subj": f"{aggregate}.>"}).encode()
        msg = await self.nc.request(self._direct_get, request, timeout=PUBLISH_TIMEOUT)
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
        await self.js.publish(timer, encode(event), headers=headers)

    async def _append_one(self, aggregate: str, event: msgspec.Struct, expected: int, cancel_timer: str | None) -> int:
        msg_id = os.urandom(12).hex()
        headers = {
            "Nats-Msg-Id": msg_id,
            "Nats-Expected-Last-Subject-Sequence": str(expected),
            "Nats-Expected-Last-Subject-Sequence-Subject": f"{aggregate}.>",
        }
        if cancel_timer:
            headers["Nats-Schedule-Next"] = "purge"
            headers["Nats-Scheduler"] = cancel_timer
        subject = f"{aggregate}.{type(event).__name__}"
        payload = encode(event)
        if len(payload) > self.max_event_bytes:   # the server would close the connection on it
            raise EventTooLarge(f"{subject} is {len(payload)} bytes; the event store takes at most "
                                f"{self.max_event_bytes}")
        for attempt in range(1, PUBLISH_TRIES + 1):
            try:
                ack = await self.js.publish(subject, payload, headers=headers)
                return ack.seq
            except BadRequestError as err:
                if err.err_code != WRONG_LAST_SEQUENCE:
                    raise
                if attempt > 1:
                    # Lost ack: our earlier try may have been stored. The stream says whose it is.
                    seq, last_id = await self.last_message_id(aggregate)
                    if last_id == msg_id:
                        return seq
                raise ConcurrencyConflict(aggregate) from err
            except TimeoutError:
                if attempt == PUBLISH_TRIES:
                    raise
                log.warning("no ack for %s (try %d); publishing again with the same Nats-Msg-Id", subject, attempt)
        raise AssertionError("unreachable")
