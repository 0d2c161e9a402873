"""Server-Sent Events: the run list, one run, one run's logs, the metrics — pushed as stored.

Every message that carries a change has the stream sequence of its event as SSE id, so
a browser that reconnects sends `Last-Event-ID` and gets exactly what it missed: no gap,
no duplicate. The run list starts with a snapshot of the projector's views, taken in the
same step as the subscription to its changes, so nothing falls between the two.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import msgspec
from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from events import subjects
from events.output import OutputEnded, OutputLine
from events.run import RunEvent
from projections import run_list
from projections.projector import Change
from projections.run_view import run_view, timeline
from projections.step_logs import log_entries
from services.identity.authority import Resource
from services.read import Run, Watched, evolve, run_events, run_with_output
from services.errors import AccessDenied, EngineUnavailable
from ui.web.access import ACCESS, CALLER, may_on_run, may_read, permit
from ui.web.api import RUN_PATH, ApiError, backend, permit_run_read

log = logging.getLogger(__name__)

SNAPSHOT_RUNS = 500          # newest runs in a list snapshot (active ones always)
MAX_BACKLOG = 10_000         # changes queued for a slow client before it is cut off to reconnect
METRICS_EVERY_SECONDS = 1.0
VIEW_EVERY_SECONDS = 0.5     # a run's whole view, at most this often while its events stream in
REVERIFY_SECONDS = 1.0       # how soon an open stream ends after its token is revoked
# A stream sequence: a 64-bit count in ASCII digits (`str.isdigit` takes "²", which `int` refuses).
SEQUENCE = re.compile(r"[0-9]{1,20}")


# Open streams, so that shutting the server down ends them instead of waiting for them.
STREAMS = web.AppKey("streams", set[asyncio.Task[Any]])


@contextlib.asynccontextmanager
async def open_stream(request: web.Request) -> AsyncIterator[EventSourceResponse]:
    """An SSE response for this handler; the server ends it at shutdown (and, with
    handler cancellation on, when the client goes away), and so does revoking its token."""
    task = asyncio.current_task()
    assert task is not None
    request.app[STREAMS].add(task)
    watcher = asyncio.create_task(_end_when_refused(request, task))
    try:
        async with sse_response(request) as sse:
            yield sse
    finally:
        watcher.cancel()
        request.app[STREAMS].discard(task)


async def _end_when_refused(request: web.Request, stream: asyncio.Task[Any]) -> None:
    """A stream outlives the request that opened it: its credential is checked again every REVERIFY_SECONDS, and
    the stream ends once it is revoked or expired, as every request of it would then be refused. A check that
    fails for any other reason ends it too: the browser reconnects, and is let in only if its token still is."""
    caller = request.get(CALLER)
    if caller is None or caller.credential is None:
        return      # an open /metrics stream: nobody to refuse
    verifier = request.app[ACCESS].guard.verifier
    while True:
        await asyncio.sleep(REVERIFY_SECONDS)
        try:
            await verifier.verify(caller.credential)
        except AccessDenied:
            stream.cancel()
            return
        except EngineUnavailable:
            continue      # the tokens cannot be checked just now: the stream goes on until they can be
        except Exception:     # a check that broke must not leave the stream open, unchecked
            log.exception("ending a stream: its token could not be checked again")
            stream.cancel()
            return


async def end_streams(app: web.Application) -> None:
    open_tasks: set[asyncio.Task[Any]] = app[STREAMS]
    for task in list(open_tasks):
        task.cancel()


def _dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def last_event_id(request: web.Request) -> int | None:
    """Where the client stopped: the `Last-Event-ID` header (sent by browsers on reconnect)
    or `?last_event_id=` (for a first connection that resumes a known position)."""
    text = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if not text:
        return None
    if not SEQUENCE.fullmatch(text):
        raise ApiError(400, "bad_request", f"Last-Event-ID must be a stream sequence number, got {text[:40]!r}")
    return int(text)


async def runs_stream(request: web.Request) -> web.StreamResponse:
    projector = backend(request).projector
    last = last_event_id(request)
    queue: asyncio.Queue[tuple[int, dict[str, Any]] | None] = asyncio.Queue()

    def readable(summary: dict[str, Any]) -> bool:
        return may_read(request, summary["playbook"], summary.get("environment"))

    def on_change(change: Change) -> None:
        if change.run is None or not readable(change.run):
            return
        queue.put_nowait((change.seq, change.run) if queue.qsize() < MAX_BACKLOG else None)

    async with open_stream(request) as sse:
        # From here to listen(): no await, so the snapshot and the changes meet exactly.
        backlog = projector.run_changes_after(last) if last is not None else None
        if backlog is not None:
            backlog = [(seq, summary) for seq, summary in backlog if readable(summary)]
        snapshot = None if backlog is not None else _snapshot(
            {run_id: r for run_id, r in projector.views.runs.items() if may_read(request, r.playbook, r.environment)},
            projector.position)
        stop = projector.listen(on_change)
        try:
            if snapshot is not None:
                await sse.send(_dumps(snapshot), id=str(snapshot["position"]), event="snapshot")
            for seq, summary in backlog or []:
                await sse.send(_dumps(summary), id=str(seq), event="run")
            while (item := await queue.get()) is not None:
                await sse.send(_dumps(item[1]), id=str(item[0]), event="run")
        finally:
            stop()
    return sse


def _snapshot(runs: dict[str, run_list.RunSummary], position: int) -> dict[str, Any]:
    newest = sorted(runs.values(), key=lambda r: r.started_at, reverse=True)
    shown = [r for i, r in enumerate(newest) if i < SNAPSHOT_RUNS or r.active]
    # Every run left out started no later than this: a change to one of them is not a new run to count.
    left_out_from = newest[SNAPSHOT_RUNS - 1].started_at if len(shown) < len(newest) else None
    return {"position": position, "total": len(runs), "runs": [run_list.as_dict(r) for r in shown],
            "left_out_from": left_out_from}


async def run_stream(request: web.Request) -> web.StreamResponse:
    """One run: each event (id = its sequence) with its timeline lines, then the run's view.
    With `?logs=1` also its logs, as on the logs stream, so a page needs one connection."""
    run_id = await _known_run(request)
    with_logs = request.query.get("logs") in ("1", "true")
    last, last_line = positions(request) if with_logs else (last_event_id(request) or 0, 0)
    run, playbooks = Run(id=run_id), backend(request).client.playbooks
    nc = backend(request).nc
    async with open_stream(request) as sse, _PacedViews(request, sse, run) as views:
        if not with_logs:
            async for seq, event, pending in _follow(request, run_id):
                evolve(run, await playbooks.resolve(event), seq)    # the event goes out as stored: with its pin
                if seq > last:
                    await sse.send(_dumps(_event_message(seq, event, run)), id=str(seq), event="event")
                if not pending:
                    await views.changed()
            return sse
        position = [0, last_line]
        events = _sending_output(sse, run_with_output(nc, run_id, after_line=last_line), position)
        async with contextlib.aclosing(events):
            async for seq, event, pending in events:
                evolve(run, await playbooks.resolve(event), seq)    # the event goes out as stored: with its pin
                if seq > last:
                    await sse.send(_dumps(_event_message(seq, event, run)), id=_id(position), event="event")
                    if entries := log_entries(seq, event):
                        await sse.send(_dumps(entries), event="log")
                if not pending:
                    await views.changed()
    return sse


class _PacedViews:
    """The run's view, sent once the stream has caught up and then at most every VIEW_EVERY_SECONDS.

    A view is the whole run with what the caller may do to it (`may`), built and encoded anew: one per event cost a
    run of 500 steps 36 ms an event, in the event loop `playbook up` shares with the engine, which a watched run then
    slowed a hundredfold. A change held back goes out when the pace allows, whether or not another event comes.
    """

    def __init__(self, request: web.Request, sse: EventSourceResponse, run: Run) -> None:
        self.request, self.sse, self.run = request, sse, run
        self.next_at = 0.0
        self.later: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _PacedViews:
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.later is not None:
            self.later.cancel()

    async def changed(self) -> None:
        wait = self.next_at - asyncio.get_running_loop().time()
        if wait <= 0:
            await self._send()
        elif self.later is None:
            self.later = asyncio.create_task(self._send_after(wait))

    async def _send_after(self, wait: float) -> None:
        await asyncio.sleep(wait)       # a pace limit, not a wait for an outcome
        self.later = None
        with contextlib.suppress(ConnectionError):      # the browser went away: its handler ends the stream
            await self._send()

    async def _send(self) -> None:
        self.next_at = asyncio.get_running_loop().time() + VIEW_EVERY_SECONDS
        view = run_view(self.run)
        await self.sse.send(_dumps({**view, "may": may_on_run(self.request, self.run)}), event="view")


def _event_message(seq: int, event: RunEvent, run: Run) -> dict[str, Any]:
    """The event as stored with its timeline line (marked if the run's fold just quarantined it)."""
    return {"seq": seq, "type": type(event).__name__, "event": msgspec.to_builtins(event),
            "timeline": timeline([(seq, event)], run.quarantined[-1:])}


async def logs_stream(request: web.Request) -> web.StreamResponse:
    """One run's step logs, each from the first: `live` lines as running attempts print them (kept in PB_LOGS,
    so a late joiner gets them all), `end` when an attempt's output is over, and `log` as each attempt's output
    is recorded in its event. `?step=` narrows to one step. Ids are `<event sequence>.<line sequence>`:
    a reconnect with Last-Event-ID resumes both exactly."""
    run_id, (last, last_line) = await _known_run(request), positions(request)
    step = request.query.get("step") or None
    if step is not None and not re.fullmatch(subjects.STEP_ID_PATTERN, step):
        raise ApiError(400, "bad_request", f"{step[:40]!r} is not a step id")
    async with open_stream(request) as sse:
        position = [last, last_line]
        watched = run_with_output(backend(request).nc, run_id, step, after_event=last, after_line=last_line)
        events = _sending_output(sse, watched, position)
        async with contextlib.aclosing(events):
            async for seq, event, _ in events:
                entries = [e for e in log_entries(seq, event) if step is None or e.step_id == step]
                if entries:
                    await sse.send(_dumps(entries), id=_id(position), event="log")
    return sse


async def _sending_output(sse: EventSourceResponse, watched: AsyncGenerator[Watched], position: list[int]
                          ) -> AsyncGenerator[tuple[int, RunEvent, int]]:
    """The run's events, its output lines sent on the way (`live`, `end`); `position` kept as both advance."""
    async with contextlib.aclosing(watched):
        async for seen in watched:
            if isinstance(seen.item, RunEvent):
                position[0] = seen.seq
                yield seen.seq, seen.item, seen.stored_after
            else:
                position[1] = seen.seq
                await _send_output(sse, seen.item, position)


def positions(request: web.Request) -> tuple[int, int]:
    """Where a client of a stream with logs stopped: `<event sequence>.<line sequence>` (or an event sequence)."""
    text = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or "0.0"
    event, _, line = text.partition(".")
    if not SEQUENCE.fullmatch(event) or not SEQUENCE.fullmatch(line or "0"):
        raise ApiError(400, "bad_request", f"Last-Event-ID must be <event sequence>.<line sequence>, got {text[:40]!r}")
    return int(event), int(line or 0)


def _id(position: list[int]) -> str:
    return f"{position[0]}.{position[1]}"


async def _send_output(sse: EventSourceResponse, item: OutputLine | OutputEnded, position: list[int]) -> None:
    await sse.send(_dumps(item), id=_id(position), event="live" if isinstance(item, OutputLine) else "end")


async def metrics_stream(request: web.Request) -> web.StreamResponse:
    """The metrics view, at most once a second while events change it."""
    await permit(request, "read", Resource())
    projector = backend(request).projector
    changed = asyncio.Event()
    changed.set()

    def on_change(change: Change) -> None:
        if change.metrics_changed:
            changed.set()

    async with open_stream(request) as sse:
        stop = projector.listen(on_change)
        try:
            while True:
                await changed.wait()
                changed.clear()
                await sse.send(_dumps(projector.views.metrics.as_json()), id=str(projector.position), event="metrics")
                await asyncio.sleep(METRICS_EVERY_SECONDS)   # a pace limit, not a wait for an outcome
        finally:
            stop()
    return sse


async def _known_run(request: web.Request) -> str:
    run_id = request.match_info["run_id"]
    await permit_run_read(request, run_id)
    return run_id


async def _follow(request: web.Request, run_id: str, after: int = 0) -> AsyncIterator[tuple[int, RunEvent, int]]:
    """The run's stored events from the first (or after `after`), then live ones, with how
    many more are already stored; in order, none skipped or repeated."""
    events = run_events(backend(request).nc, run_id, after)
    async with contextlib.aclosing(events):
        async for item in events:
            yield item


def add_routes(app: web.Application) -> None:
    app[STREAMS] = set()
    app.on_shutdown.append(end_streams)
    r = app.router
    r.add_get("/api/runs/stream", runs_stream)        # before RUN_PATH, which "stream" matches
    r.add_get("/api/metrics/stream", metrics_stream)
    r.add_get(RUN_PATH + "/stream", run_stream)
    r.add_get(RUN_PATH + "/logs/stream", logs_stream)
