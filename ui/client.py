"""A thin client of the engine over NATS: send commands, read and follow events.

Every interface (CLI, web, MCP) talks to the engine through this, never around it.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from events import subjects
from events.codec import decode_event, encode
from events.circuit import CircuitEvent
from events.commands import Command, PublishPlaybook, Reply, StartRun
from events.run import TERMINAL_EVENTS, RollbackStarted, RunEvent
from projections import run_list
from services.errors import EngineUnavailable, TooLarge
from services.read import Breaker, EventStore, PlaybookStore, Run, all_breakers, breaker_history, fold

_reply_decoder = msgspec.json.Decoder(Reply)
HEADROOM = 4096      # bytes of a message left for headers (a credential, say)


class EngineClient:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.store = EventStore(nc)
        self.playbooks = PlaybookStore(nc)

    async def send(self, command: Command, timeout: float = 30.0) -> Reply:
        """Send a command and wait for its reply. A playbook too large for one NATS message is uploaded
        first and the command names the upload; TooLarge past the limits, EngineUnavailable without an engine."""
        data = _body(command)
        if len(data) > self.nc.max_payload - HEADROOM and isinstance(command, (StartRun, PublishPlaybook)):
            data = _body(await self._by_upload(command))
        if len(data) > self.nc.max_payload - HEADROOM:
            raise TooLarge(f"the {type(command).__name__} command is {len(data)} bytes, more than one NATS message "
                           f"takes ({self.nc.max_payload} bytes with {HEADROOM} for headers)")
        try:
            msg = await self.nc.request(subjects.command(type(command).__name__), data, timeout=timeout)
        except nats.errors.MaxPayloadError as err:
            raise TooLarge(f"the {type(command).__name__} command is larger than NATS takes: {err}") from None
        except Exception as err:
            if "no responders" in str(err).lower() or isinstance(err, (TimeoutError, asyncio.TimeoutError)):
                raise EngineUnavailable("the engine did not answer: is `playbook up` running?") from err
            raise
        return _reply_decoder.decode(msg.data)

    async def _by_upload(self, command: StartRun | PublishPlaybook) -> Command:
        if isinstance(command, StartRun):
            return msgspec.structs.replace(command, playbook="", upload=await self.playbooks.upload(command.playbook))
        return msgspec.structs.replace(command, text="", upload=await self.playbooks.upload(command.text))

    async def events(self, run_id: str, *, resolved: bool = False) -> list[tuple[int, RunEvent]]:
        """The run's events as stored; `resolved`: ready to fold (a pinned RunStarted with its playbook)."""
        envelopes, _ = await self.store.load(run_id)
        return await self.playbooks.resolved(envelopes) if resolved else envelopes

    async def run(self, run_id: str) -> Run:
        return fold(run_id, await self.events(run_id, resolved=True))

    async def follow(self, run_id: str, *, after_rollback_start: bool = False,
                     resolved: bool = False) -> AsyncIterator[tuple[int, RunEvent]]:
        """Every event of the run from the first, then live ones until the run ends.

        With `after_rollback_start`, the end is the end of the latest rollback (the run
        ended once before it was rolled back). With `resolved`, events come ready to fold.
        """
        js = self.nc.jetstream()
        sub = await js.subscribe(subjects.run_all(run_id), ordered_consumer=True,
                                 deliver_policy=DeliverPolicy.ALL)
        waiting_for_rollback = after_rollback_start
        try:
            while True:
                msg = await sub.next_msg(timeout=None)
                try:
                    event = decode_event(msg.data)
                except msgspec.DecodeError:
                    continue
                if resolved:
                    event = await self.playbooks.resolve(event)
                yield msg.metadata.sequence.stream, event
                if isinstance(event, RollbackStarted):
                    waiting_for_rollback = False
                elif isinstance(event, TERMINAL_EVENTS) and not waiting_for_rollback:
                    return
        finally:
            await sub.unsubscribe()

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



def _body(command: Command) -> bytes:
    """The command as a request body: the subject names its type."""
    body = msgspec.json.decode(encode(command))
    body.pop("type", None)
    return json.dumps(body).encode()
