"""The projector: keeps the engine-wide views current from JetStream.

One ordered consumer reads every run and circuit event from the stream position the
views have reached. The views are snapshotted to disk with that position, so a restart
reads only what is new instead of the whole history; `rebuild()` starts again from the
first event for an audit. Listeners hear of each change as it is applied: the SSE
streams push them to browsers, numbered by stream sequence so a reconnect resumes.
"""
from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from events import subjects
from events.circuit import CircuitEvent, decode_circuit_event
from events.codec import decode_event, held_to
from events.run import RunEvent
from projections import run_list
from projections.audit import AuditEntry, AuditTrail, select
from projections.metrics import Metrics
from projections.identity_records import refusals, token_acts
from services.read import named_jetstream
from services.tasks import stop

log = logging.getLogger(__name__)

SNAPSHOT_EVERY_SECONDS = 5.0
# Bytes of snapshot written a second, on average: the views hold every run kept, so a week of runs makes them
# hundreds of MB, and rewriting that every 5 s was most of a terabyte of disk writes a day and a stall of the
# event loop (shared with the services under `playbook up`) each time. A large view is saved less often; a
# restart then reads a little more of the stream.
SNAPSHOT_BYTES_PER_SECOND = 256 * 1024
RETRY_SECONDS = 1.0
RECENT_CHANGES = 10_000       # run-list changes kept for SSE clients that reconnect


class Views(msgspec.Struct, kw_only=True):
    """Everything the projector folds, and how far into the stream it is."""

    position: int = 0
    stream_created: str = ""   # a recreated stream invalidates the snapshot
    runs: dict[str, run_list.RunSummary] = {}
    audit: AuditTrail = msgspec.field(default_factory=AuditTrail)
    metrics: Metrics = msgspec.field(default_factory=Metrics)


@dataclass(frozen=True, slots=True)
class Change:
    """One applied event, as listeners see it: what changed in which view."""

    seq: int
    event: RunEvent | CircuitEvent
    run: dict[str, Any] | None        # the run's summary after the event, if it changed
    audit: dict[str, Any] | None      # the audit entry the event made, if any
    metrics_changed: bool


Listener = Callable[[Change], None]


class Projector:
    def __init__(self, nc: NATS, snapshot: Path | None = None, stream: str = subjects.RUNS_STREAM,
                 snapshot_rate: float = SNAPSHOT_BYTES_PER_SECOND) -> None:
        self.nc, self.stream, self.snapshot, self.snapshot_rate = nc, stream, snapshot, snapshot_rate
        self.views = Views()
        self.applied = 0                  # events applied since this process started (or rebuilt)
        self.pending = 0                  # events stored but not yet applied, as last reported
        self.recent: deque[tuple[int, dict[str, Any]]] = deque(maxlen=RECENT_CHANGES)
        self._listeners: set[Listener] = set()
        self.refusals, self.token_acts = refusals(nc), token_acts(nc)
        self._task: asyncio.Task[None] | None = None
        self._rebuilding: asyncio.Task[dict[str, Any]] | None = None
        self.rebuilds = 0                 # rebuilds done since this process started: joined askers share one
        self._caught_up = asyncio.Event()
        self._saved_position = 0
        self._saved_at: float | None = None    # monotonic time of the last snapshot, and its size
        self._saved_size = 0
        self._complete_after = 0          # every run-list change after this position is in `recent`
        self._settled: Metrics | None = None   # the metrics before a rebuild, reported until it has caught up

    # -- reading -------------------------------------------------------------------

    @property
    def position(self) -> int:
        return self.views.position

    @property
    def settled_metrics(self) -> Metrics:
        """What a scrape reports: during a rebuild, the figures from before it. A counter that fell back to what a
        half-done fold has counted, then rose again, is a reset to Prometheus: every run ever counted would show
        as started (or failed) within one scrape interval."""
        return self._settled if self._settled is not None else self.views.metrics

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    async def wait_caught_up(self, timeout: float) -> None:
        await asyncio.wait_for(self._caught_up.wait(), timeout)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Hear of every change from now on; returns the call that stops it.

        Taking a snapshot of the views and calling this with no `await` between
        gives a listener every change after the snapshot, none twice.
        """
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def audit_entries(self, keep: Callable[[AuditEntry], bool], *, limit: int, **where: Any) -> list[AuditEntry]:
        """Audit entries `keep` accepts, newest first: people's acts on runs and breakers, and refused access."""
        acts = self.views.audit.select(limit=limit, keep=keep, **where)
        refused = select(reversed(self.refusals.entries), limit=limit, keep=keep, **where)
        tokens = select(reversed(self.token_acts.entries), limit=limit, keep=keep, **where)
        return heapq.nlargest(limit, [*acts, *refused, *tokens], key=lambda e: e.at)

    def run_changes_after(self, seq: int) -> list[tuple[int, dict[str, Any]]] | None:
        """Run-list changes after position `seq`, or None if they are not all kept any more
        (or `seq` is from another stream): the caller then sends a fresh snapshot."""
        if seq < self._complete_after or seq > self.position:
            return None
        return [(s, summary) for s, summary in self.recent if s > seq]

    def _remember(self, seq: int, summary: dict[str, Any]) -> None:
        if len(self.recent) == self.recent.maxlen:
            self._complete_after = self.recent[0][0]
        self.recent.append((seq, summary))

    # -- running ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.refusals.start()
        await self.token_acts.start()
        self.views = await self._restore()
        self._complete_after = self.views.position
        self._task = asyncio.create_task(self._keep_following(), name="projector")

    async def stop(self) -> None:
        await self.refusals.stop()
        await self.token_acts.stop()
        await self._halt()

    async def _halt(self) -> None:
        if self._task is not None:
            await stop(self._task)
            self._task = None
        await self._save()

    async def rebuild(self) -> dict[str, Any]:
        """Forget the views and fold the whole stream again; returns what it took.

        One at a time: a rebuild asked while one runs (from HTTP or NATS) joins it and gets
        its result. The rebuild goes on if an asker goes away.
        """
        if self._rebuilding is None or self._rebuilding.done():
            self._rebuilding = asyncio.create_task(self._rebuild(), name="projector-rebuild")
        return await asyncio.shield(self._rebuilding)

    async def _rebuild(self) -> dict[str, Any]:
        began = time.perf_counter()
        await self._halt()
        if self._settled is None:       # a rebuild after one that never caught up keeps the first one's figures
            self._settled = self.views.metrics
        self.views, self.applied, self._caught_up = Views(), 0, asyncio.Event()
        self.recent.clear()
        self._complete_after = 0
        if self.snapshot is not None:
            self.snapshot.unlink(missing_ok=True)
        self._task = asyncio.create_task(self._keep_following(), name="projector")
        await self._caught_up.wait()
        self._settled = None
        await self._save()
        self.rebuilds += 1
        return {"rebuild": self.rebuilds, "events": self.applied, "position": self.position,
                "runs": len(self.views.runs), "seconds": round(time.perf_counter() - began, 3)}

    async def _keep_following(self) -> None:
        """Follow the stream; if that fails (stream gone, NATS away too long), start again
        from the views' position after a pause: the web stays up, /readyz says why."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:  # the views must not die with one bad moment
                log.exception("projector stopped following the stream; again in %.0f s", RETRY_SECONDS)
                self._caught_up.clear()
                await asyncio.sleep(RETRY_SECONDS)

    async def _follow(self) -> None:
        js = named_jetstream(self.nc)
        created = await self._stream_created()
        if self.views.stream_created != created:
            if self.views.position:
                log.info("projector: the stream was recreated since the snapshot; rebuilding")
            self.views = Views(stream_created=created)
        start = self.views.position + 1

        # A callback, not next_msg(): nats-py's next_msg costs two tasks and a wait_for per
        # message, which made a replay and the live views lag under load (bench/replay, sse).
        async def on_message(msg: Msg) -> None:
            meta = msg.metadata
            self._apply(meta.sequence.stream, msg.subject, msg.data, msg.headers)
            self.pending = meta.num_pending
            if not self.pending:
                self._caught_up.set()

        sub = await js.subscribe(f"{subjects.PREFIX}.>", stream=self.stream, ordered_consumer=True, cb=on_message,
                                 config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                                       opt_start_seq=start))
        try:
            await self._mark_caught_up_if_idle()
            while True:
                await asyncio.sleep(SNAPSHOT_EVERY_SECONDS)
                await self.save_if_due(time.monotonic())
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _mark_caught_up_if_idle(self) -> None:
        """Nothing to read at start: the views are current already."""
        info = await self.nc.jetstream().stream_info(self.stream)
        if info.state.last_seq <= self.views.position:
            self._caught_up.set()

    def _apply(self, seq: int, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        views = self.views
        views.position = seq
        if subject.startswith(f"{subjects.PREFIX}.timer."):
            return      # a timer holds an event that is stored on its run when it fires
        try:
            event: RunEvent | CircuitEvent = held_to(subject, decode_circuit_event(data) if subject.startswith(
                f"{subjects.PREFIX}.circuit.") else decode_event(data), headers)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("projector: skipping undecodable message %d on %s", seq, subject)
            return
        self.applied += 1
        summary = None
        if isinstance(event, RunEvent) and isinstance(event, run_list.LIST_EVENTS):
            run_list.apply(views.runs, event)
            if (found := views.runs.get(event.run_id)) is not None:
                summary = run_list.as_dict(found)
                self._remember(seq, summary)
        entry = views.audit.apply(seq, event)
        audited = msgspec.to_builtins(entry) if entry is not None else None
        change = Change(seq, event, summary, audited, views.metrics.apply(seq, event))
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # one broken listener must not stop the views
                log.exception("projector listener failed")

    # -- snapshots -------------------------------------------------------------------

    async def _stream_created(self) -> str:
        try:
            info = await self.nc.jetstream().stream_info(self.stream)
        except NotFoundError:
            return ""
        created = getattr(info, "created", None)
        return created.isoformat() if isinstance(created, datetime) else str(created or "")

    async def _restore(self) -> Views:
        if self.snapshot is None or not self.snapshot.exists():
            return Views()
        try:
            data = await asyncio.to_thread(self.snapshot.read_bytes)
            views = msgspec.msgpack.decode(data, type=Views)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as err:
            log.warning("projector: snapshot %s unreadable (%s); rebuilding from the first event", self.snapshot, err)
            return Views()
        self._saved_position, self._saved_size = views.position, len(data)
        log.info("projector: resuming from position %d (%d runs)", views.position, len(views.runs))
        return views

    async def save_if_due(self, now: float) -> None:
        """Save unless the last snapshot is too recent for its size (`now`: monotonic seconds)."""
        pause = max(SNAPSHOT_EVERY_SECONDS, self._saved_size / self.snapshot_rate)
        if self._saved_at is None or now - self._saved_at >= pause:
            await self._save()
            self._saved_at = now

    async def _save(self) -> None:
        if self.snapshot is None or self.views.position == self._saved_position:
            return
        data = msgspec.msgpack.encode(self.views)
        self._saved_position, self._saved_size = self.views.position, len(data)
        await asyncio.to_thread(_write_atomically, self.snapshot, data)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
