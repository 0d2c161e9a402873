"""A thin client of the engine over NATS: send commands, read and follow events.

Every interface (CLI, web, MCP) talks to the engine through this, never around it. Every
request carries its caller's credential (`Authorization: Bearer`), which the engine
verifies; reads go through consumers this client names, the only kind a client or agent
login may create.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from events import subjects
from events.codec import checked_event, command_body, decode_reply
from events.circuit import CircuitEvent
from events.commands import HEADROOM, Command, PublishPlaybook, Reply, StartRun
from events.identity import Caller, caller_headers
from events.output import OutputEnded, OutputLine
from events.run import RollbackStarted, RunEvent, RunRetried, ended_after
from projections import run_list
from services.errors import EngineUnavailable, TooLarge
from services.read import (
    Breaker, EventStore, PlaybookStore, Run, all_breakers, breaker_history, evolve, fold, persist, run_events,
    run_with_output, stored_output,
)

READ_BATCH = 256              # stored messages fetched at once while there is a backlog
IDLE_WAIT = 5.0               # how long one fetch waits for a live message
INACTIVE_SECONDS = 60.0       # the server removes a reader's consumer this long after its last fetch


class EngineClient:
    def __init__(self, nc: NATS, credential: str | None = None, *, on_behalf_of: str | None = None,
                 door: str | None = None) -> None:
        self.nc = nc
        self.store = EventStore(nc)
        self.playbooks = PlaybookStore(nc)
        self.caller = Caller(credential=credential, on_behalf_of=on_behalf_of, door=door or "nats")  # type: ignore[arg-type]

    def headers(self, caller: Caller | None = None) -> dict[str, str]:
        """The request headers that say who asks: this client's caller, or the one given."""
        caller = caller or self.caller
        if not caller.credential:
            return {}
        return caller_headers(caller.credential, caller.on_behalf_of, None if caller.door == "nats" else caller.door)

    async def send(self, command: Command, timeout: float = 30.0, *, caller: Caller | None = None) -> Reply:
        """Send a command for this client's caller (or `caller`: the web forwards each request's own).

        A playbook too large for one NATS message is uploaded first and the command names the upload;
        TooLarge past the limits, EngineUnavailable without an engine.
        """
        data = command_body(command)
        if len(data) > self.nc.max_payload - HEADROOM and isinstance(command, (StartRun, PublishPlaybook)):
            data = command_body(await self._by_upload(command))
        if len(data) > self.nc.max_payload - HEADROOM:
            raise TooLarge(f"the {type(command).__name__} command is {len(data)} bytes, more than one NATS message "
                           f"takes ({self.nc.max_payload} bytes with {HEADROOM} for headers)")
        try:
            msg = await self.request(subjects.command(type(command).__name__), data, timeout, caller=caller)
        except nats.errors.MaxPayloadError as err:
            raise TooLarge(f"the {type(command).__name__} command is larger than NATS takes: {err}") from None
        return decode_reply(msg.data)

    async def _by_upload(self, command: StartRun | PublishPlaybook) -> Command:
        if isinstance(command, StartRun):
            return msgspec.structs.replace(command, playbook="", upload=await self.playbooks.upload(command.playbook))
        return msgspec.structs.replace(command, text="", upload=await self.playbooks.upload(command.text))

    async def request(self, subject: str, data: bytes, timeout: float, *, caller: Caller | None = None,
                      what: str = "the engine did not answer: is `playbook up` running?") -> Msg:
        try:
            return await self.nc.request(subject, data, timeout=timeout, headers=self.headers(caller) or None)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError) as err:
            raise EngineUnavailable(what) from err

    async def events(self, run_id: str, *, resolved: bool = False) -> list[tuple[int, RunEvent]]:
        """The run's events as stored; `resolved`: ready to fold (a pinned RunStarted with its playbook)."""
        envelopes, _ = await self.store.load(run_id)
        return await self.playbooks.resolved(envelopes) if resolved else envelopes

    async def run(self, run_id: str) -> Run:
        return fold(run_id, await self.events(run_id, resolved=True))

    async def follow(self, run_id: str, *, after_rollback_start: bool = False, after_retry: bool = False,
                     after: int = 0, resolved: bool = False) -> AsyncIterator[tuple[int, RunEvent]]:
        """Every event of the run from the first (or those stored after sequence `after`), then
        live ones until the run has ended.

        The end is the contract's (`ended_after`): a terminal event not undone by a later
        reopening one (a rollback, a retry), with nothing stored after what was read. With
        `after_rollback_start`, an end counts only once a RollbackStarted was read (the caller
        just asked for one). With `after_retry`, the events from the run's latest `RunRetried` on.
        With `resolved`, events come ready to fold.
        """
        if after_retry:
            after = max((seq for seq, event in await self.events(run_id) if isinstance(event, RunRetried)),
                        default=1) - 1
        ended, waiting_for_rollback = False, after_rollback_start
        events = run_events(self.nc, run_id, after)
        async with contextlib.aclosing(events):
            async for seq, event, stored_after in events:
                yield seq, (await self.playbooks.resolve(event) if resolved else event)
                waiting_for_rollback = waiting_for_rollback and not isinstance(event, RollbackStarted)
                ended = ended_after(ended, event)
                if ended and not waiting_for_rollback and not stored_after:
                    return

    async def exists(self, run_id: str) -> bool:
        last, _ = await self.store.last_message_id(subjects.run(run_id))
        return last > 0

    async def rolled_back_any(self, run_id: str) -> bool:
        """Whether some step of the run was rolled back: one lookup, where the run's state is a fold."""
        last, _ = await self.store.last_position(subjects.run_event(run_id, "StepRolledBack"))
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
                    evolve(run, await self.playbooks.resolve(seen.item), seen.seq)
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
        """Ask the web server(s) to refold their views from the first event (an admin's request)."""
        msg = await self.request(subjects.PROJECTIONS_REBUILD, b"", timeout,
                                 what="no web server answered: is `playbook up` running?")
        result: dict[str, Any] = json.loads(msg.data)
        return result

    async def audit(self, query: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Who did what, and who was refused: a web server answers from its views, filtered by what the caller
        may read."""
        msg = await self.request(subjects.AUDIT, json.dumps(query).encode(), timeout,
                                 what="no web server answered: is `playbook up` running?")
        result: dict[str, Any] = json.loads(msg.data)
        return result

    async def list_runs(self) -> list[run_list.RunSummary]:
        """Every run's summary, as stored when asked. Each kind of event is read by a consumer of its own, and
        the kinds merged in stream order: JetStream serves one consumer of several wildcard filters at a pace that
        falls as the stream holds more subjects (in a soak, 2,000 runs took 80 s to list this way; 2 s by kind)."""
        end, _ = await self.store.last_position(f"{subjects.PREFIX}.run.>")   # each kind read up to the same event
        kinds = await asyncio.gather(*(self._stored([subjects.events_of_type(t.__name__)], end)
                                       for t in run_list.LIST_EVENTS))
        runs: dict[str, run_list.RunSummary] = {}
        for _, event in heapq.merge(*kinds, key=lambda stored: stored[0]):
            run_list.apply(runs, event)
        return sorted(runs.values(), key=lambda r: r.started_at)

    async def _stored(self, filters: list[str], end: int) -> list[tuple[int, RunEvent]]:
        """Every event on these subjects stored up to sequence `end`, with its sequence, in order."""
        found = []
        async with contextlib.aclosing(self._reading(filters, follow=False)) as reading:
            async for msg in reading:
                seq = msg.metadata.sequence.stream
                if seq > end:
                    break
                with contextlib.suppress(msgspec.DecodeError):
                    found.append((seq, checked_event(msg.subject, msg.data, msg.headers)))
        return found

    async def _reading(self, filters: list[str], *, follow: bool, after: int = 0) -> AsyncGenerator[Msg]:
        """Stored messages on these subjects from the first (after stream sequence `after`), then (`follow`) live
        ones, through a pull consumer this client names. If the server loses it (a restart), it is made again after
        the last message read."""
        js, last = self.nc.jetstream(), after
        while True:
            # One replica, in memory: a reader's consumer needs no quorum (a frozen server does not hold it up).
            config = ConsumerConfig(ack_policy=AckPolicy.NONE, filter_subjects=filters, mem_storage=True,
                                    num_replicas=1, inactive_threshold=INACTIVE_SECONDS,
                                    deliver_policy=DeliverPolicy.ALL)
            if last:
                config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, last + 1
            try:
                # Asked again through an election: a cluster's meta leader places the consumer.
                sub = await persist(functools.partial(js.pull_subscribe, filters[0], stream=self.store.stream,
                                                      config=config), f"reading {filters[0]}")
            except NotFoundError:
                return   # no stream yet: nothing stored yet
            name = None
            try:
                info = await persist(sub.consumer_info, f"reading {filters[0]}")
                name, pending = info.name, info.num_pending
                while follow or pending:
                    try:
                        batch = await sub.fetch(READ_BATCH if pending else 1, timeout=IDLE_WAIT)
                    except nats.errors.TimeoutError:
                        await persist(sub.consumer_info, f"reading {filters[0]}")   # NotFoundError if lost
                        continue
                    for msg in batch:
                        last, pending = msg.metadata.sequence.stream, msg.metadata.num_pending
                        yield msg
                return
            except NotFoundError:
                continue
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
                    if name:
                        await js.delete_consumer(self.store.stream, name)
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
