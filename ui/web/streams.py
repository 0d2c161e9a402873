"""Server-Sent Events: the run list, one run, one run's logs, the metrics — pushed as stored.

Every message that carries a change has the stream sequence of its event as SSE id, so
a browser that reconnects sends `Last-Event-ID` and gets exactly what it missed: no gap,
no duplicate. The run list starts with a snapshot of the projector's views, taken in the
same step as the subscription to its changes, so nothing falls between the two.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from events import subjects
from events.codec import decode_event
from events.run import RunEvent
from projections import run_list
from projections.projector import Change
from projections.run_view import run_view, timeline
from projections.step_logs import log_entries
from services.identity.authority import Resource
from services.read import Run, evolve
from ui.web.access import may_read, permit
from ui.web.api import RUN_PATH, ApiError, backend, permit_run_read

SNAPSHOT_RUNS = 500          # newest runs in a list snapshot (active ones always)
MAX_BACKLOG = 10_000         # changes queued for a slow client before it is cut off to reconnect
METRICS_EVERY_SECONDS = 1.0


# Open streams, so that shutting the server down ends them instead of waiting for them.
STREAMS = web.AppKey("streams", set[asyncio.Task[Any]])


@contextlib.asynccontextmanager
async def open_stream(request: web.Request) -> AsyncIterator[EventSourceResponse]:
    """An SSE response for this handler; the server ends it at shutdown (and, with
    handler cancellation on, when the client goes away)."""
    task = asyncio.current_task()
    assert task is not None
    request.app[STREAMS].add(task)
    try:
        async with sse_response(request) as sse:
            yield sse
    finally:
        request.app[STREAMS].discard(task)


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
    if not text.isdigit():
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
    return {"position": position, "total": len(runs), "runs": [run_list.as_dict(r) for r in shown]}


async def run_stream(request: web.Request) -> web.StreamResponse:
    """One run: each event (id = its sequence) with its timeline lines, then the run's view.
    With `?logs=1` also its logs, as on the logs stream, so a page needs one connection."""
    run_id, last = await _known_run(request), last_event_id(request) or 0
    with_logs = request.query.get("logs") in ("1", "true")
    run = Run(id=run_id)
    async with _live_output(request, run_id, None, enabled=with_logs) as lines, open_stream(request) as sse:
        forwarding = asyncio.create_task(_forward_live(sse, lines))
        try:
            async for seq, event, pending in _follow(request, run_id):
                evolve(run, event, seq)
                if seq > last:
                    message = {"seq": seq, "type": type(event).__name__, "event": msgspec.to_builtins(event),
                               "timeline": timeline([(seq, event)], run.quarantined[-1:])}
                    await sse.send(_dumps(message), id=str(seq), event="event")
                    if with_logs and (entries := log_entries(seq, event)):
                        await sse.send(_dumps(entries), event="log")
                if not pending:
                    await sse.send(_dumps(run_view(run)), event="view")
        finally:
            forwarding.cancel()
    return sse


async def logs_stream(request: web.Request) -> web.StreamResponse:
    """One run's step logs: `log` as each attempt's output is recorded (id = its event's
    sequence), and `live` lines of attempts still running; `?step=` narrows to one step."""
    run_id, last = await _known_run(request), last_event_id(request) or 0
    step = request.query.get("step") or None
    async with _live_output(request, run_id, step) as lines, open_stream(request) as sse:
        forwarding = asyncio.create_task(_forward_live(sse, lines))
        try:
            async for seq, event, _ in _follow(request, run_id, after=last):
                entries = [e for e in log_entries(seq, event) if step is None or e.step_id == step]
                if entries:
                    await sse.send(_dumps(entries), id=str(seq), event="log")
        finally:
            forwarding.cancel()
    return sse


@contextlib.asynccontextmanager
async def _live_output(request: web.Request, run_id: str, step: str | None, enabled: bool = True
                       ) -> AsyncIterator[asyncio.Queue[bytes]]:
    """Live output lines of the run's running attempts, subscribed before the response
    starts, so no line after the client sees it is missed. A slow client misses live
    lines, never recorded logs."""
    lines: asyncio.Queue[bytes] = asyncio.Queue(maxsize=MAX_BACKLOG)
    if not enabled:
        yield lines
        return

    async def on_line(msg: Msg) -> None:
        if step is None or json.loads(msg.data).get("step_id") == step:
            with contextlib.suppress(asyncio.QueueFull):
                lines.put_nowait(msg.data)

    nc = backend(request).nc
    subscription = await nc.subscribe(subjects.live_output_of_run(run_id), cb=on_line)
    await nc.flush()
    try:
        yield lines
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


async def _forward_live(sse: EventSourceResponse, lines: asyncio.Queue[bytes]) -> None:
    while True:
        await sse.send((await lines.get()).decode(), event="live")


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
    many more are already stored; an ordered consumer, so none is skipped or repeated."""
    js = backend(request).nc.jetstream()
    sub = await js.subscribe(subjects.run_all(run_id), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    try:
        while True:
            msg = await sub.next_msg(timeout=None)
            seq = msg.metadata.sequence.stream
            if seq <= after:
                continue
            try:
                event = decode_event(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            yield seq, event, msg.metadata.num_pending
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def add_routes(app: web.Application) -> None:
    app[STREAMS] = set()
    app.on_shutdown.append(end_streams)
    r = app.router
    r.add_get("/api/runs/stream", runs_stream)        # before RUN_PATH, which "stream" matches
    r.add_get("/api/metrics/stream", metrics_stream)
    r.add_get(RUN_PATH + "/stream", run_stream)
    r.add_get(RUN_PATH + "/logs/stream", logs_stream)
