"""PB_LOGS: running attempts' output lines, kept for a while, and reading them with the run's events.

What it keeps: lines of the last MAX_AGE, at most MAX_BYTES in all (the oldest go first), and
per attempt what the executor sends: MAX_LINES_PER_ATTEMPT lines and 1 MiB, then a note that
it stops there (the attempt's event keeps the head of its output for good).

Reading: an attempt's lines are stored before its OutputEnded, and that before the event that
finishes the attempt is appended (the executor waits for the stream's acknowledgement). So a
reader that, on meeting a finishing event, first reads the output stored so far has every line
of that attempt before the event, even if the executor died before its OutputEnded.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from events import subjects
from events.output import OutputEnded, OutputLine, decode_output
from events.run import TERMINAL_EVENTS, RunEvent, StepFailed, StepSucceeded
from services.jetstream import ensure_stream
from services.ordered import in_order, run_events
from services.settings import LOGS_MAX_BYTES
from services.store import EventStore
from services.tasks import stop

MAX_AGE_SECONDS = 7 * 24 * 3600
MAX_LINES_PER_ATTEMPT = 10_000
MAX_LINE_BYTES = 64 << 10          # a line is sent in pieces of 4096 characters; JSON may escape each in 6 bytes
BACKLOG = 1000                     # items read ahead of a slow reader, per stream
# Events after which the attempt's (or the run's) output is all stored.
FINISHING: tuple[type[RunEvent], ...] = (StepSucceeded, StepFailed, *TERMINAL_EVENTS)

Output = OutputLine | OutputEnded


def stream_config(replicas: int = 1, max_bytes: int = LOGS_MAX_BYTES) -> dict[str, Any]:
    return {
        "name": subjects.LOGS_STREAM,
        "subjects": [subjects.OUTPUT_SUBJECTS],
        "storage": "file",
        "retention": "limits",
        "discard": "old",
        "num_replicas": replicas,
        "allow_direct": True,
        "max_age": MAX_AGE_SECONDS * 1_000_000_000,
        "max_bytes": max_bytes,
        "max_msgs_per_subject": MAX_LINES_PER_ATTEMPT + 2,    # and the note that the attempt stops there, and its end
        "max_msg_size": MAX_LINE_BYTES,
        "duplicate_window": 60_000_000_000,
    }


async def ensure_logs_stream(nc: NATS, replicas: int = 1, max_bytes: int = LOGS_MAX_BYTES) -> None:
    """Create PB_LOGS, or bring its limits up to date. Idempotent."""
    await ensure_stream(nc, stream_config(replicas, max_bytes), sized_by="PLAYBOOK_LOGS_MAX_BYTES")


@dataclass(frozen=True, slots=True)
class Watched:
    """An event of the run or a line of its output, with its sequence in its own stream."""

    seq: int
    item: RunEvent | Output
    stored_after: int       # in its stream and filter, when it was read


async def stored_output(nc: NATS, run_id: str, step_id: str | None = None, attempt: int | None = None,
                        after: int = 0) -> AsyncGenerator[tuple[int, Output]]:
    """The output lines stored now (of a step, of an attempt), from the first; then it returns."""
    scope = subjects.live_output_of_run(run_id, step_id, attempt)
    last, _ = await EventStore(nc, subjects.LOGS_STREAM).last_position(scope)
    if last <= after:
        return
    lines = _output(nc, scope, after)
    async with contextlib.aclosing(lines):
        async for seq, line, _ in lines:
            if line is not None:
                yield seq, line
            if seq >= last:
                return


async def run_with_output(nc: NATS, run_id: str, step_id: str | None = None, attempt: int | None = None,
                          after_event: int = 0, after_line: int = 0) -> AsyncGenerator[Watched]:
    """The run's events and its output (of a step, of an attempt), each from the first (or after the
    positions given), then live: both in their order, merged so that an attempt's lines come before the
    event that finishes it. Endless: the caller stops reading."""
    scope = subjects.live_output_of_run(run_id, step_id, attempt)
    logs = EventStore(nc, subjects.LOGS_STREAM)
    events: asyncio.Queue[tuple[int, Any, int]] = asyncio.Queue(BACKLOG)
    lines: asyncio.Queue[tuple[int, Any, int]] = asyncio.Queue(BACKLOG)
    pumps = [asyncio.create_task(_pump(run_events(nc, run_id, after_event), events)),
             asyncio.create_task(_pump(_output(nc, scope, after_line), lines))]
    next_event, next_line = asyncio.create_task(events.get()), asyncio.create_task(lines.get())
    last_line = after_line
    try:
        while True:
            await asyncio.wait({next_event, next_line, *pumps}, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                if pump.done():
                    pump.result()          # a reader's failure is the caller's
            if next_line.done():
                last_line, line, stored_after = next_line.result()
                next_line = asyncio.create_task(lines.get())
                if line is not None:
                    yield Watched(last_line, line, stored_after)
            if next_event.done():
                seq, event, stored_after = next_event.result()
                next_event = asyncio.create_task(events.get())
                if isinstance(event, FINISHING):
                    stored, _ = await logs.last_position(scope)
                    while last_line < stored:
                        last_line, line, after = await next_line
                        next_line = asyncio.create_task(lines.get())
                        if line is not None:
                            yield Watched(last_line, line, after)
                yield Watched(seq, event, stored_after)
    finally:
        await stop(*pumps, next_event, next_line)


async def _pump(source: AsyncGenerator[tuple[int, Any, int]], into: asyncio.Queue[tuple[int, Any, int]]) -> None:
    async with contextlib.aclosing(source):
        async for item in source:
            await into.put(item)


async def _output(nc: NATS, scope: str, after: int) -> AsyncGenerator[tuple[int, Output | None, int]]:
    """Output lines on `scope` after `after`, then live ones (None for a message that is not one, so its
    sequence still counts); none if there is no PB_LOGS (an older engine)."""
    reader = in_order(nc, subjects.LOGS_STREAM, [scope], after, prefix="logs")
    async with contextlib.aclosing(reader):
        try:
            async for stored in reader:
                line: Output | None
                try:
                    line = decode_output(stored.data)
                except msgspec.DecodeError:
                    line = None
                yield stored.seq, line, stored.pending
        except NotFoundError:
            await asyncio.Event().wait()     # nothing will ever come: wait with the caller
