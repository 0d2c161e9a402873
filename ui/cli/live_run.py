"""One run read over the CLI's plain connection (`ui.cli.wire`): its stored events, then live ones from the feed.

The feed (`pb.feed.run.<id>.>`, the server republishing PB_RUNS as it stores) is subscribed
before the stored events are read, so none falls between the two; each event is yielded
once, in stream order. One connection loses no message while it lives (the server
disconnects a slow reader rather than skip one); still, whenever the feed is quiet for a
while what is stored after the last event read is read again, and the run's end counts only
once nothing is stored after it (the contract's `ended_after`, as `EngineClient.follow`).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import msgspec

from events import subjects
from events.codec import decode_event
from events.run import RunEvent, RunStarted, ended_after
from services.fold import chunk_subject, decode_parsed, meta_subject, object_name, whole, with_playbook
from ui.cli.wire import Connection

QUIET, QUIETEST = 1.0, 30.0   # seconds without a live event before what is stored is read again: 1, 2, 4 ... 30


def stored_events(connection: Connection, run_id: str, *, resolved: bool = True) -> list[tuple[int, RunEvent]]:
    """The run's events as stored now (`resolved`: ready to fold)."""
    stored = connection.stored(subjects.RUNS_STREAM, subjects.run_all(run_id))
    return [(seq, resolve(connection, event) if resolved else event) for seq, event in _decoded(
        (int(m.headers["Nats-Sequence"]), m.data) for m in stored)]


class LiveRun:
    """`resolved`: events ready to fold (a pinned RunStarted with its playbook), else as stored."""

    def __init__(self, connection: Connection, run_id: str, *, resolved: bool = True) -> None:
        self.connection, self.run_id, self.last, self.resolved = connection, run_id, 0, resolved
        self.feed = connection.subscribe(f"{subjects.PREFIX}.feed.run.{run_id}.>")
        self.ahead: list[tuple[int, bytes]] = []

    def follow(self) -> Iterator[tuple[int, RunEvent]]:
        """Every event of the run until the run has ended."""
        ended, quiet = False, QUIET
        self._catch_up()
        while True:
            for seq, event in self._take():
                yield seq, event
                ended = ended_after(ended, event)
            if ended and not self._catch_up():
                return
            message = self.connection.next_message(self.feed, quiet)
            if message is None:             # a run waiting at a gate for hours is asked after less and less often
                quiet = QUIET if self._catch_up() else min(quiet * 2, QUIETEST)
            else:
                quiet = QUIET
                self.ahead.append((int(message.headers.get("Nats-Sequence", "0")), message.data))

    def _take(self) -> Iterator[tuple[int, RunEvent]]:
        ahead, self.ahead = sorted(self.ahead), []
        for seq, event in _decoded(ahead):
            if seq > self.last:     # not read twice: from the store and then from the feed, or the other way round
                self.last = seq
                yield seq, resolve(self.connection, event) if self.resolved else event

    def _catch_up(self) -> bool:
        """Read what is stored after the last event read; whether there was any."""
        stored = self.connection.stored(subjects.RUNS_STREAM, subjects.run_all(self.run_id), self.last)
        self.ahead += [(int(m.headers["Nats-Sequence"]), m.data) for m in stored]
        return bool(stored)


def _decoded(messages: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, RunEvent]]:
    for seq, data in messages:
        try:
            yield seq, decode_event(data)
        except msgspec.DecodeError:
            continue            # as the services do: skipped (its sequence still counts)


def resolve(connection: Connection, event: RunEvent) -> RunEvent:
    """A pinned RunStarted with its playbook and plan, read from PB_PLAYBOOKS; any other event as it is."""
    if not isinstance(event, RunStarted) or event.resolved or event.pin is None:
        return event
    bucket = subjects.PLAYBOOKS_BUCKET
    stream, name = subjects.object_stream(bucket), object_name(event.pin.parsed, "json")
    data = None
    if (meta := connection.last(stream, meta_subject(bucket, name))) is not None:
        description = json.loads(meta.data)
        chunks = connection.stored(stream, chunk_subject(bucket, description["nuid"]), batch=64)
        data = whole(bucket, name, description, b"".join(chunk.data for chunk in chunks))
    return with_playbook(event, decode_parsed(event.pin.parsed, data, bucket))
