"""The learning service: follows every run and breaker event, learns from it, answers what it learned.

One ordered consumer reads the stream from the knowledge's tracked position. Messages
become facts on the event loop (a run met mid-way is first replayed from the stream) and
go in batches to one worker thread, where the eventsourcing application records them with
their position in one transaction; while it writes a batch, the next one gathers. When
anything fails (the store unreachable or full, another writer) the service starts over
from the tracked position after a pause: nothing lost, nothing counted twice.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec
from eventsourcing.persistence import IntegrityError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from events import subjects
from events.circuit import decode_circuit_event
from events.codec import decode_event, held_to
from events.commands import Rejection
from events.identity import Caller
from events.insights import Insights, InsightsRequest, LearningReply, LearningStatus, Rebuilt
from events.json_limits import decode_json
from events.run import RunStarted
from services.errors import AccessDenied, EngineUnavailable, UnknownPlaybook
from services.identity.authority import COMMAND_ACTIONS, Resource, authorize, reads_somewhere
from services.identity.guard import Guard
from services.learning.config import LearningConfig
from services.learning.errors import LearningRefused
from services.learning.facts import Fact
from services.learning.interpret import INTERPRETATION, Interpreter
from services.learning.knowledge import Batch, Knowledge, PositionConflict
from services.learning.report import Readable, insights_of
from services.learning.stores import Stores
from services.playbook_store import PlaybookStore
from services.store import EventStore
from services.tasks import stop

log = logging.getLogger(__name__)

T = TypeVar("T")
Answering = Callable[[bytes, "Readable | None"], Awaitable[LearningReply]]
MAX_PENDING = 5000           # messages read and not yet written; beyond, reading waits
# At most one write this often: a write is a transaction (a commit, a fsync), and busy engines would pay
# one per event. What is learned lags by this much at most; `wait_for` callers see it.
WRITE_EVERY = 0.25
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
MAX_WAIT_SECONDS = 30.0      # the longest an insights request may wait for the position it asks for
TIMERS = f"{subjects.PREFIX}.timer."
CIRCUITS = f"{subjects.PREFIX}.circuit."


class LearningService:
    def __init__(self, nc: NATS, store: EventStore, config: LearningConfig, playbooks: PlaybookStore,
                 guard: Guard) -> None:
        self.nc, self.store, self.config, self.playbooks, self.guard = nc, store, config, playbooks, guard
        self.position = 0            # the last stream sequence recorded in the knowledge being written
        self.error = ""              # why the service is not learning, while it retries
        # The store is open: answers wait for the store thread. Not after it failed and while it is opened again,
        # which can take a connect timeout per try (PostgreSQL down): refused at once, not left to the asker's timeout.
        self._open = False
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learning")
        self._stores = Stores(config)   # touched on the worker thread only
        self._rebuild: asyncio.Future[Rebuilt] | None = None
        self._rebuild_asked = False
        self._rebuild_until = 0
        self._rebuild_began = 0.0
        self._pending = Batch(after=0, last=0, stream="")
        self._read = 0
        self._failure: BaseException | None = None
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._advanced = asyncio.Event()
        self._stopping = False
        self._written_at = 0.0       # monotonic time of the last write
        self.writes = 0              # transactions, for the record (one per batch)
        self._task: asyncio.Task[None] | None = None
        self._subs: list[Any] = []
        self._requests: set[asyncio.Task[None]] = set()

    @property
    def read(self) -> int:
        """The last stream sequence read (written, or waiting in the next batch)."""
        return self._read

    # -- running ---------------------------------------------------------------------------

    async def start(self) -> None:
        for subject, work in ((subjects.LEARNING_INSIGHTS, self._insights_request),
                              (subjects.LEARNING_REBUILD, self._rebuild_request),
                              (subjects.LEARNING_STATUS, self._status_request)):
            self._subs.append(await self.nc.subscribe(subject, queue="learning", cb=self._answering(work)))
        self._task = asyncio.create_task(self._keep_learning(), name="learning")

    async def stop(self, grace: float = 10.0) -> None:
        """Write what was read (within `grace` seconds), then close the store. Again: nothing to do."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        for sub in self._subs:
            with contextlib.suppress(Exception):   # the connection may be closing already
                await sub.unsubscribe()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=grace)
            if not done:
                await stop(self._task)
        for task in list(self._requests):
            task.cancel()
        await self._call(self._stores.close)
        self._worker.shutdown(wait=True)

    async def wait_for(self, position: int, timeout: float) -> None:
        """Until the knowledge has learned up to stream sequence `position`; TimeoutError after `timeout` s."""
        async with asyncio.timeout(timeout):
            while self.position < position:
                await self._advanced.wait()

    async def lag(self) -> int:
        """Events stored in the stream and not yet learned (for /metrics)."""
        return max(0, await self._stream_last_seq() - self.position)

    async def rebuild(self) -> Rebuilt:
        """Learn everything again from the first event into a fresh store, then answer from it."""
        if self._rebuild is None or self._rebuild.done():
            self._rebuild = asyncio.get_running_loop().create_future()
            self._rebuild_asked, self._rebuild_began = True, time.perf_counter()
            self._wake.set()
        return await asyncio.shield(self._rebuild)

    async def _keep_learning(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self._follow()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as err:  # every failure is retried from the tracked position
                pause = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                self.error, self._open = f"{type(err).__name__}: {err}", False
                if isinstance(err, (IntegrityError, PositionConflict)):
                    log.warning("learning: another writer recorded these events first (%s); "
                                "again from the tracked position in %.0f s", err, pause)
                else:
                    log.exception("learning stopped; again from the tracked position in %.0f s", pause)
                await self._call(self._stores.close)
                await asyncio.sleep(pause)
                failures += 1

    async def _follow(self) -> None:
        """Read from the tracked position and write batches until told to start over."""
        stream = await self._stream_identity()
        await self._call(self._stores.open)
        learning = self._stores.learning
        assert learning is not None
        cursor = await self._call(learning.cursor)
        self.error, self._open = "", True
        if self._rebuild_asked or (cursor.stream and cursor.stream != stream):
            if not self._rebuild_asked:
                log.warning("learning: %s; learning it again from the first event", _why_again(cursor.stream, stream))
                self._rebuild_began = time.perf_counter()
            self._rebuild_asked = False
            self._rebuild_until = await self._stream_last_seq()
            await self._call(self._stores.begin_rebuild)
            learning = self._stores.learning
            assert learning is not None
        self._advance(await self._call(learning.position))
        self._read = self.position
        self._pending, self._failure = Batch(after=self.position, last=self.position, stream=stream), None
        self._room.set()
        interpreter = Interpreter()

        async def on_message(msg: Msg) -> None:
            await self._on_message(msg, interpreter)

        sub = await self.nc.jetstream().subscribe(
            f"{subjects.PREFIX}.>", stream=self.store.stream, ordered_consumer=True, cb=on_message,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.position + 1))
        try:
            await self._finish_rebuild_if_caught_up()
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._failure is not None:
                    raise self._failure
                if self._pending.messages:
                    await self._gather_more()
                    await self._write(learning, stream)
                if self._stopping or self._rebuild_asked:
                    return
        finally:
            await sub.unsubscribe()

    async def _on_message(self, msg: Msg, interpreter: Interpreter) -> None:
        """Turn a message into facts for the next batch; never raises (an ordered consumer would lose it)."""
        try:
            seq = msg.metadata.sequence.stream
            if seq <= self._read or self._failure is not None:
                return
            if self._pending.messages >= MAX_PENDING:
                self._room.clear()
                await self._room.wait()
            facts = await self._facts(interpreter, seq, msg.subject, msg.data, msg.headers)
            self._read = seq
            pending = self._pending
            pending.last, pending.messages = seq, pending.messages + 1
            pending.facts.extend(facts)
            self._wake.set()
        except Exception as err:  # noqa: BLE001 - handed to the follower, which starts over
            self._failure = err
            self._wake.set()

    async def _facts(self, interpreter: Interpreter, seq: int, subject: str, data: bytes,
                     headers: dict[str, str] | None = None) -> list[Fact]:
        if subject.startswith(TIMERS):
            return []
        try:
            event = held_to(subject, decode_circuit_event(data) if subject.startswith(CIRCUITS) else decode_event(data),
                            headers)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            log.warning("learning: skipping undecodable message %d on %s: %s", seq, subject, err)
            return []
        try:
            if isinstance(event, RunStarted):
                event = await self.playbooks.resolve(event)
            if interpreter.needs_history(event):
                envelopes, _ = await self.store.load(event.run_id)   # type: ignore[union-attr]
                history = await self.playbooks.resolved([(s, e) for s, e in envelopes if s < seq])
                interpreter.replay(event.run_id, [e for _, e in history])   # type: ignore[union-attr]
        except UnknownPlaybook as err:   # its playbook is gone: nothing to learn from this run
            log.warning("learning: skipping message %d on %s: %s", seq, subject, err)
            return []
        try:
            if isinstance(event, RunStarted):   # a step shape each: 10,000 steps take ~0.1 s, off the event loop
                return await asyncio.to_thread(interpreter.facts, event)
            return interpreter.facts(event)
        except Exception:  # one nonsensical event must not stop the learning
            log.exception("learning: cannot learn from message %d on %s; skipped", seq, subject)
            return []

    async def _gather_more(self) -> None:
        """Until WRITE_EVERY after the last write, so that a busy stream is written in batches; not when
        stopping or rebuilding (catching up is written as fast as it is read). A stop or a full batch waits
        that long at most."""
        due = self._written_at + WRITE_EVERY - time.monotonic()
        if due > 0 and not (self._stopping or self._rebuild_asked or self._stores.building):
            await asyncio.sleep(due)

    async def _write(self, learning: Knowledge, stream: str) -> None:
        self._written_at = time.monotonic()
        self.writes += 1
        batch = self._pending
        self._pending = Batch(after=batch.last, last=batch.last, stream=stream)
        self._room.set()
        await self._call(learning.learn, batch)
        self.error = ""
        self._advance(batch.last)
        await self._finish_rebuild_if_caught_up()

    def _advance(self, position: int) -> None:
        self.position = position
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def _finish_rebuild_if_caught_up(self) -> None:
        if self._stores.building and self.position >= self._rebuild_until:
            rebuilt = await self._call(self._switch_to_rebuilt)
            log.info("learning: rebuilt from the first event into %s (%d events, %.1f s)",
                     rebuilt.generation, rebuilt.events, rebuilt.seconds)
            if self._rebuild is not None and not self._rebuild.done():
                self._rebuild.set_result(rebuilt)

    # -- on the worker thread: the store -------------------------------------------------

    def _switch_to_rebuilt(self) -> Rebuilt:
        cursor = self._stores.switch_to_rebuilt()
        return Rebuilt(events=cursor.messages, position=cursor.position, generation=self._stores.generation,
                       seconds=round(time.perf_counter() - self._rebuild_began, 3))

    def _insights(self, playbook: str | None, environment: str | None, readable: Readable | None) -> Insights:
        if self._stores.serving is None:
            raise LearningRefused("not_ready", f"the knowledge store is not open ({self.error or 'starting'})")
        return insights_of(self._stores.serving, playbook, environment, readable)

    async def _call(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, work, *args)

    # -- answering -------------------------------------------------------------------------

    def _answering(self, work: Answering) -> Callable[[Msg], Awaitable[None]]:
        async def on_request(msg: Msg) -> None:
            task = asyncio.create_task(self._answer(msg, work))   # a slow answer holds up no other request
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)
        return on_request

    async def _answer(self, msg: Msg, work: Answering) -> None:
        try:
            readable = await self._admit(msg)
            reply = await work(msg.data, readable)
        except AccessDenied as err:
            reply = LearningReply(error=Rejection(code=err.code, message=str(err)))
        except EngineUnavailable as err:
            reply = LearningReply(error=Rejection(code="unavailable", message=str(err)))
        except LearningRefused as err:
            reply = LearningReply(error=Rejection(code=err.code, message=str(err)))
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            reply = LearningReply(error=Rejection(code="bad_request", message=f"bad request body: {err}"))
        except Exception as err:  # the asker gets the reason, the service stays up
            log.exception("learning: answering %s failed", msg.subject)
            reply = LearningReply(error=Rejection(code="internal_error", message=f"{type(err).__name__}: {err}"))
        data = msgspec.json.encode(reply)
        if len(data) > self.nc.max_payload:
            data = msgspec.json.encode(LearningReply(error=Rejection(
                code="too_large", message=f"the answer is {len(data)} bytes, more than NATS carries "
                                          f"({self.nc.max_payload}); ask for one playbook")))
        if msg.reply:
            await msg.respond(data)

    async def _admit(self, msg: Msg) -> Readable | None:
        """Insights and status are read by viewers; a rebuild, like a projection rebuild, is an admin's. Insights
        are what runs taught, so a reader reads those of the playbooks and environments they may read runs of:
        returns which, or None for a reader of everything."""
        caller, request = Caller.of(msg.headers), msg.subject.removeprefix(f"{subjects.PREFIX}.")
        action = COMMAND_ACTIONS[request]
        if msg.subject != subjects.LEARNING_INSIGHTS:
            await self.guard.admit(caller.credential, door=caller.door, action=action, resource=Resource(),
                                   on_behalf_of=caller.on_behalf_of)
            return None
        asked = decode_json(msg.data or b"{}", InsightsRequest)
        resource = Resource(playbook=asked.playbook, environment=asked.environment or None)
        acting = await self.guard.authenticate(caller.credential, door=caller.door, action=action,
                                               target=resource.describe(), on_behalf_of=caller.on_behalf_of)
        reader = self.guard.as_effective(acting)
        if authorize(reader, action, Resource()).allowed:
            return None
        one = asked.playbook is not None and asked.environment is not None
        if one or not reads_somewhere(reader, asked.playbook):
            await self.guard.permit(acting, action, resource, door=caller.door)   # refused, and recorded
        return lambda playbook, environment: authorize(
            reader, action, Resource(playbook=playbook, environment=environment)).allowed

    async def _insights_request(self, data: bytes, readable: Readable | None) -> LearningReply:
        request = decode_json(data or b"{}", InsightsRequest)
        if self.error and not self._open:
            raise LearningRefused("not_ready", f"the knowledge store is not open ({self.error}); ask again")
        if request.after > self.position:
            if self._stores.building:
                raise LearningRefused("rebuilding", "the knowledge is being rebuilt; ask again when it is done")
            try:
                await self.wait_for(request.after, min(max(request.wait, 0.0), MAX_WAIT_SECONDS))
            except TimeoutError:
                raise LearningRefused("behind", f"learned up to {self.position}, not yet {request.after}; "
                                                "ask again") from None
        return LearningReply(insights=await self._call(self._insights, request.playbook, request.environment,
                                                       readable))

    async def _rebuild_request(self, _data: bytes, _readable: Readable | None) -> LearningReply:
        return LearningReply(rebuilt=await self.rebuild())

    async def _status_request(self, _data: bytes, _readable: Readable | None) -> LearningReply:
        last = await self._stream_last_seq()
        listed = await self._call(self._listed) if self._open else {}
        return LearningReply(status=LearningStatus(
            position=self.position, stream_last_seq=last, lag=max(0, last - self.position),
            generation=self._stores.generation, backend=self.config.backend,
            rebuilding=bool(self._stores.building or self._rebuild_asked), error=self.error, **listed))

    def _listed(self) -> dict[str, Any]:
        """What the serving knowledge lists, what made room, and what found none (for the status and /metrics)."""
        if self._stores.serving is None:
            return {}
        catalog = self._stores.serving.catalog()
        left_out = {what.removeprefix("left out "): n for what, n in self._stores.told.items()
                    if what.startswith("left out ")}
        return {"playbooks": len(catalog.playbooks), "targets": len(catalog.targets),
                "evicted": catalog.evictions(), "left_out": left_out}

    # -- the stream ------------------------------------------------------------------------

    async def _stream_identity(self) -> str:
        """When the stream was created, and how it is read: knowledge of a stream since recreated, or learned by
        an earlier interpretation, is learned again."""
        info = await self.nc.jetstream().stream_info(self.store.stream)
        return f"{info.created or ''} {_INTERPRETED}"

    async def _stream_last_seq(self) -> int:
        info = await self.nc.jetstream().stream_info(self.store.stream)
        return info.state.last_seq


_INTERPRETED = f"interpretation {INTERPRETATION}"


def _why_again(known: str, now: str) -> str:
    """Why knowledge of stream identity `known` is not that of `now` (the first version's had no interpretation)."""
    if known.split(" interpretation ")[0] == now.split(" interpretation ")[0]:
        return "an earlier version of the engine learned this knowledge, and reads some events differently now"
    return "the stream was recreated since the knowledge was written"
