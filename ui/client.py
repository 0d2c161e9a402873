"""A thin client of the engine over NATS: send commands, read and follow events.

Every interface (CLI, web, MCP) talks to the engine through this, never around it.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from events import subjects
from events.codec import decode_event, encode
from events.circuit import CircuitEvent
from events.commands import Command, Reply
from events.output import OutputEnded, OutputLine
from events.run import RunEvent, ended_after
from projections import run_list
from services.errors import EngineUnavailable
from services.read import (
    Breaker, EventStore, Run, all_breakers, breaker_history, evolve, fold, run_events, run_with_output, stored_output,
)

_reply_decoder = msgspec.json.Decoder(Reply)


class EngineClient:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.store = EventStore(nc)

    async def send(self, command: Command, timeout: float = 30.0) -> Reply:
        body = msgspec.json.decode(encode(command))
        body.pop("type", None)
        try:
            msg = await self.nc.request(subjects.command(type(command).__name__),
                                        json.dumps(body).encode(), timeout=timeout)
        except Exception as err:
            if "no responders" in str(err).lower() or isinstance(err, (TimeoutError, asyncio.TimeoutError)):
                raise EngineUnavailable("the engine did not answer: is `playbook up` running?") from err
            raise
        return _reply_decoder.decode(msg.data)

    async def events(self, run_id: str) -> list[tuple[int, RunEvent]]:
        envelopes, _ = await self.store.load(run_id)
        return envelopes

    async def run(self, run_id: str) -> Run:
        return fold(run_id, await self.events(run_id))

    async def follow(self, run_id: str) -> AsyncIterator[tuple[int, RunEvent]]:
        """Every event of the run from the first, then live ones until the run has ended.

        The end is the contract's (`ended_after`): a terminal event not undone by a later
        reopening one, with nothing stored after what was read. A run ended and rolled back
        by hand is followed to the end of its rollback.
        """
        ended = False
        events = run_events(self.nc, run_id)
        async with contextlib.aclosing(events):
            async for seq, event, stored_after in events:
                yield seq, event
                ended = ended_after(ended, event)
                if ended and not stored_after:
                    return

    async def exists(self, run_id: str) -> bool:
        last, _ = await self.store.last_message_id(subjects.run(run_id))
        return last > 0

    async def logs(self, run_id: str, step_id: str | None = None, attempt: int | None = None, *,
                   follow: bool = False) -> AsyncIterator[tuple[int, OutputLine | OutputEnded]]:
        """The output lines of the run's attempts (of one step, of one attempt), from the first, each with its
        sequence in PB_LOGS: those stored now, or with `follow` then live ones until the end of what was asked
        (the attempt, the step once it has settled, the run once it has ended)."""
        if not follow:
            stored = stored_output(self.nc, run_id, step_id, attempt)
            async with contextlib.aclosing(stored):
                async for item in stored:
                    yield item
            return
        run, ended = Run(id=run_id), False
        watched = run_with_output(self.nc, run_id, step_id, attempt)
        async with contextlib.aclosing(watched):
            async for seen in watched:
                if isinstance(seen.item, RunEvent):
                    evolve(run, seen.item, seen.seq)
                    ended = ended_after(ended, seen.item)
                    if (ended and not seen.stored_after) or _output_over(run, step_id, attempt):
                        return
                    continue
                yield seen.seq, seen.item
                if isinstance(seen.item, OutputEnded) and (seen.item.step_id, seen.item.attempt) == (step_id, attempt):
                    return

    async def circuits(self) -> list[Breaker]:
        return await all_breakers(self.store)

    async def circuit_events(self, key: str) -> Sequence[tuple[int, CircuitEvent]]:
        return await breaker_history(self.store, key)

    async def rebuild_projections(self, timeout: float = 300.0) -> dict[str, Any]:
        """Ask the web server(s) to refold their views from the first event."""
        try:
            msg = await self.nc.request(subjects.PROJECTIONS_REBUILD, b"", timeout=timeout)
        except Exception as err:
            if "no responders" in str(err).lower():
                raise EngineUnavailable("no web server answered: is `playbook up` running?") from err
            raise
        result: dict[str, Any] = json.loads(msg.data)
        return result

    async def list_runs(self) -> list[run_list.RunSummary]:
        runs: dict[str, run_list.RunSummary] = {}
        filters = [subjects.events_of_type(t.__name__) for t in run_list.LIST_EVENTS]
        async for event in self._read_all(filters):
            run_list.apply(runs, event)
        return sorted(runs.values(), key=lambda r: r.started_at)

    async def _read_all(self, filters: list[str]) -> AsyncIterator[RunEvent]:
        """Every stored event on these subjects, once, through an ephemeral consumer."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, pending_msgs_limit=-1, pending_bytes_limit=-1)
        js = self.nc.jetstream()
        try:
            try:
                info = await js.add_consumer(self.store.stream, ConsumerConfig(
                    deliver_subject=inbox, ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                    filter_subjects=filters, mem_storage=True, inactive_threshold=10.0))
            except NotFoundError:
                return   # no stream yet: no runs yet
            remaining = info.num_pending or 0
            while remaining > 0:
                msg = await sub.next_msg(timeout=10)
                remaining = msg.metadata.num_pending
                try:
                    yield decode_event(msg.data)
                except msgspec.DecodeError:
                    continue
            await js.delete_consumer(self.store.stream, info.name)
        finally:
            await sub.unsubscribe()


def _output_over(run: Run, step_id: str | None, attempt: int | None) -> bool:
    """Whether the step (or its attempt) will print no more: it settled, or the attempt is over."""
    if step_id is None:
        return False
    step = run.steps.get(step_id)
    if step is None:
        return run.exists          # no such step in this run
    if attempt is not None and (step.attempt.number > attempt or (
            step.attempt.number == attempt and step.status not in ("scheduled", "running"))):
        return True
    return step.status in ("succeeded", "skipped") or (step.status == "failed" and not step.retry.status)
