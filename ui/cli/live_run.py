"""One run read over the CLI's plain connection (`ui.cli.wire`): its stored events, then live ones from the feed.

The feed (`pb.feed.run.<id>.>`, the server republishing PB_RUNS as it stores) is subscribed
before the stored events are read, so none falls between the two; each event is yielded
once, in stream order. One connection loses no message while it lives (the server
disconnects a slow reader rather than skip one); still, whenever the feed is quiet for a
while what is stored after the last event read is read again, and the run's end counts only
once nothing is stored after it (the contract's `ended_after`, as `EngineClient.follow`).
If NATS goes away (a restart, a cluster's server lost), the follow connects again and reads
from the store what the feed sent meanwhile.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator


from events import subjects
from events.codec import decode_stored, not_scheduled_by_engine
from events.run import RunEvent, RunRetried, RunStarted, ended_after
from services.fold import chunk_subject, decode_parsed, meta_subject, object_name, whole, with_playbook
from services.errors import EngineUnavailable
from ui.cli.wire import Connection, Refused

QUIET, QUIETEST = 1.0, 30.0   # seconds without a live event before what is stored is read again: 1, 2, 4 ... 30
AWAY_AT_MOST = 60.0           # seconds a follow keeps connecting again after NATS went away (a restart takes a few)


def stored_events(connection: Connection, run_id: str, *, resolved: bool = True) -> list[tuple[int, RunEvent]]:
    """The run's events as stored now (`resolved`: ready to fold)."""
    stored = connection.stored(subjects.RUNS_STREAM, subjects.run_all(run_id))
    return [(seq, resolve(connection, event) if resolved else event) for seq, event in _decoded(
        run_id, ((int(m.headers["Nats-Sequence"]), m.headers.get("Nats-Subject", ""), m.data, m.headers)
                 for m in stored))]


class LiveRun:
    """`resolved`: events ready to fold (a pinned RunStarted with its playbook), else as stored."""

    def __init__(self, connection: Connection, run_id: str, *, resolved: bool = True) -> None:
        self.connection, self.run_id, self.last, self.resolved = connection, run_id, 0, resolved
        self.feed = connection.subscribe(f"{subjects.PREFIX}.feed.run.{run_id}.>")
        self.ahead: list[tuple[int, str, bytes, dict[str, str] | None]] = []
        self.away_since: float | None = None     # time.monotonic when NATS went away, until the store answers again

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
            try:
                message = self.connection.next_message(self.feed, quiet)
            except Refused:
                raise
            except EngineUnavailable as lost:
                self._connect_again(lost)
                message = None              # what the feed sent meanwhile is read from the store
            if message is None:             # a run waiting at a gate for hours is asked after less and less often
                quiet = QUIET if self._catch_up() else min(quiet * 2, QUIETEST)
            else:
                quiet = QUIET
                self.ahead.append((int(message.headers.get("Nats-Sequence", "0")), message.subject, message.data,
                                   message.headers))

    def _take(self) -> Iterator[tuple[int, RunEvent]]:
        ahead, self.ahead = sorted(self.ahead, key=lambda message: message[0]), []
        for seq, event in _decoded(self.run_id, ahead):
            if seq > self.last:     # not read twice: from the store and then from the feed, or the other way round
                self.last = seq
                yield seq, resolve(self.connection, event) if self.resolved else event

    def _catch_up(self) -> bool:
        """Read what is stored after the last event read; whether there was any."""
        while True:
            try:
                stored = self.connection.stored(subjects.RUNS_STREAM, subjects.run_all(self.run_id), self.last)
                break
            except Refused:
                raise
            except EngineUnavailable as lost:
                self._connect_again(lost)
        self.away_since = None
        self.ahead += [(int(m.headers["Nats-Sequence"]), m.headers.get("Nats-Subject", ""), m.data, m.headers)
                       for m in stored]
        return bool(stored)

    def _connect_again(self, lost: EngineUnavailable) -> None:
        """After NATS went away (restarted, a cluster's server lost): connect again, trying for AWAY_AT_MOST seconds
        since it went; the run goes on without us meanwhile, and what it did is read from the store."""
        if self.away_since is None:
            self.away_since = time.monotonic()
            print(f"playbook: {lost}; connecting again (for up to {AWAY_AT_MOST:g} s)", file=sys.stderr, flush=True)
        pause = 0.1
        while True:
            try:
                self.connection.redial()
                return
            except Refused:
                raise
            except EngineUnavailable as err:
                if time.monotonic() + pause - self.away_since > AWAY_AT_MOST:
                    raise EngineUnavailable(f"{err}; gave up after {AWAY_AT_MOST:g} s. The run goes on without "
                                            f"this follow: `playbook events {self.run_id} --follow`") from None
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _decoded(run_id: str, messages: Iterable[tuple[int, str, bytes, dict[str, str] | None]],
             ) -> Iterator[tuple[int, RunEvent]]:
    """As the services read them: an event this version cannot decode (or one a schedule not the engine's stored)
    is `Unreadable`, shown, not skipped."""
    for seq, subject, data, headers in messages:
        yield seq, decode_stored(data, run_id, subject.rsplit(".", 1)[-1], not_scheduled_by_engine(headers))


def resolve(connection: Connection, event: RunEvent) -> RunEvent:
    """A pinned RunStarted (or retry) with its playbook and plan, read from PB_PLAYBOOKS; any other event as it is."""
    if not isinstance(event, RunStarted | RunRetried) or event.resolved or event.pin is None:
        return event
    bucket = subjects.PLAYBOOKS_BUCKET
    stream, name = subjects.object_stream(bucket), object_name(event.pin.parsed, "json")
    data = None
    if (meta := connection.last(stream, meta_subject(bucket, name))) is not None:
        description = json.loads(meta.data)
        chunks = connection.stored(stream, chunk_subject(bucket, description["nuid"]), batch=64)
        data = whole(bucket, name, description, b"".join(chunk.data for chunk in chunks))
    return with_playbook(event, decode_parsed(event.pin.parsed, data, bucket))
