"""The consumer loop every service shares: decode, handle, acknowledge by outcome.

Each service binds a durable push consumer through a queue group, so any number of
replicas share its messages and a killed replica's unacked work is redelivered after
`ack_wait`. Outcomes: undecodable -> term, log and record; CommandRejected -> ack and log;
the engine unavailable (store full, no stream leader) -> kept and handled again here once
it answers, so a long outage spends no redeliveries; any other error -> nak with backoff,
until the `max_deliver`th delivery: then term, log and record (`MessageAbandoned` in the
run's stream, which the audit shows); success -> ack. Long handlers keep their messages
with in-progress heartbeats.

A delivery counts only when its acknowledgement subject names this stream and consumer
(`$JS.ACK.<stream>.<name>...`): NATS does not check who a push consumer delivers to, so a
reader could have copies of stored events delivered to the deliver subject; those are
not this consumer's work and are ignored.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from events import subjects
from events.codec import NotAsStored, checked_event
from events.run import MessageAbandoned, RunEvent
from services.aggregates import RunRepository
from services.errors import CommandRejected, EngineUnavailable
from services.settings import Settings

log = logging.getLogger(__name__)

FIRST_PAUSE, LONGEST_PAUSE = 0.2, 5.0     # between tries while the engine is unavailable

Handler = Callable[[Msg, RunEvent, int], Awaitable[None]]
Abandon = Callable[[MessageAbandoned], Awaitable[None]]
T = TypeVar("T")
DEFAULT_MAX_DELIVER = 10
MAX_RETRY_DELAY = 60.0
ERROR_CHARS = 1000          # of the error kept on a MessageAbandoned


class LeaveUnacknowledged(Exception):
    """Raised by a handler: this delivery is a duplicate of one still being worked on here."""


class Consumer:
    def __init__(
        self, nc: NATS, stream: str, name: str, filters: Sequence[str], handle: Handler, *,
        ack_wait: float = 30.0, max_ack_pending: int = 1000, max_deliver: int = DEFAULT_MAX_DELIVER,
        retry_delay: float = 2.0, abandon: Abandon | None = None,
    ) -> None:
        self.nc, self.stream, self.name = nc, stream, name
        self.filters, self.handle = list(filters), handle
        self.ack_wait, self.max_ack_pending = ack_wait, max_ack_pending
        self.max_deliver, self.retry_delay, self.abandon = max_deliver, retry_delay, abandon
        self._in_flight: dict[asyncio.Task[None], tuple[Msg, float]] = {}
        self._sub: Subscription | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.stopping = False
        self.ignored = 0          # deliveries that were not this consumer's (see the module's docstring)

    async def start(self) -> None:
        deliver = f"_pb.deliver.{self.stream}.{self.name}"
        config = ConsumerConfig(
            durable_name=self.name, deliver_subject=deliver, deliver_group=self.name,
            ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait, deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=self.max_ack_pending, filter_subjects=self.filters, max_deliver=self.max_deliver,
        )
        await self.nc.jetstream().add_consumer(self.stream, config)
        self._sub = await self.nc.subscribe(deliver, queue=self.name, cb=self._on_message,
                                            pending_msgs_limit=-1, pending_bytes_limit=-1)
        self._heartbeat = asyncio.create_task(self._keep_alive())

    async def stop(self, grace: float = 10.0) -> None:
        """Take no new messages, let handlers finish for `grace` seconds, hand back the rest."""
        self.stopping = True
        if self._sub is not None:
            await self._sub.unsubscribe()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=grace)
        for task, (msg, _) in list(self._in_flight.items()):
            task.cancel()
            await _quietly(msg.nak())
        if self._heartbeat:
            self._heartbeat.cancel()

    async def _on_message(self, msg: Msg) -> None:
        if self.stopping:
            return  # not acknowledged: redelivered to another replica
        if not self._ours(msg):
            self.ignored += 1
            log.warning("%s: ignoring a delivery on %s that is not this consumer's (reply %r)", self.name,
                        msg.subject, msg.reply[:120])
            return
        task = asyncio.create_task(self._process(msg))
        self._in_flight[task] = (msg, time.monotonic())
        task.add_done_callback(self._in_flight.pop)

    def _ours(self, msg: Msg) -> bool:
        """Its acknowledgement subject names this stream and consumer (both forms of `$JS.ACK`)."""
        try:
            meta = msg.metadata
        except Exception:  # noqa: BLE001 - no JetStream acknowledgement subject at all
            return False
        return meta.stream == self.stream and meta.consumer == self.name

    async def _process(self, msg: Msg) -> None:
        meta = msg.metadata
        try:
            event = checked_event(msg.subject, msg.data, msg.headers)   # held to its subject: codec.held_to
        except NotAsStored as err:
            # Not an event (a login of a few subjects published it): the fold sets it aside and no run waits for
            # it, so it is given up without a record, which would have the safety net end the run for its forger.
            log.warning("%s: dropping a message on %s that is no event: %s", self.name, msg.subject, err)
            await _quietly(msg.term())
            return
        except msgspec.DecodeError as err:
            log.error("%s: dropping undecodable message on %s: %s", self.name, msg.subject, err)
            await self._give_up(msg, f"cannot read it: {err}")
            return
        try:
            await until_recorded(lambda: self.handle(msg, event, meta.sequence.stream), f"{self.name}: {msg.subject}",
                                 lambda: self.stopping)
        except LeaveUnacknowledged:
            return
        except CommandRejected as err:
            log.info("%s: %s on %s refused: %s", self.name, type(event).__name__, event.run_id, err)
        except asyncio.CancelledError:
            await _quietly(msg.nak())
            raise
        except EngineUnavailable:   # still unavailable as this replica stops: another one handles it
            await _quietly(msg.nak())
            return
        except Exception as err:
            if meta.num_delivered >= self.max_deliver:
                log.exception("%s: handling %s failed on delivery %d of %d; giving up",
                              self.name, msg.subject, meta.num_delivered, self.max_deliver)
                await self._give_up(msg, f"{type(err).__name__}: {err}", event)
                return
            delay = min(self.retry_delay * 2.0 ** (meta.num_delivered - 1), MAX_RETRY_DELAY)
            log.exception("%s: handling %s failed (delivery %d of %d); retrying in %.1fs",
                          self.name, msg.subject, meta.num_delivered, self.max_deliver, delay)
            await _quietly(msg.nak(delay=delay))
            return
        await _quietly(msg.ack())

    async def _give_up(self, msg: Msg, error: str, event: RunEvent | None = None) -> None:
        """Stop its redelivery, and record what was abandoned where an operator looks: the run's stream (the
        run service's safety net reacts to the record: services/domain/run/abandoned.py)."""
        meta = msg.metadata
        if self.abandon is not None:
            step_id, attempt = getattr(event, "step_id", None), getattr(event, "attempt", None)
            record = MessageAbandoned(run_id=subjects.run_id_of(msg.subject), at=datetime.now(timezone.utc),
                                      consumer=self.name, seq=meta.sequence.stream, subject=msg.subject,
                                      deliveries=meta.num_delivered, error=error[:ERROR_CHARS],
                                      step_id=step_id if isinstance(step_id, str) else None,
                                      attempt=attempt if isinstance(attempt, int) else None)
            abandon = self.abandon
            try:
                await until_recorded(lambda: abandon(record), f"{self.name}: abandoning {msg.subject}",
                                     lambda: self.stopping)
            except Exception:   # the log keeps it when the stream cannot
                log.exception("%s: could not record that message %d was abandoned", self.name, record.seq)
        await _quietly(msg.term())

    async def _keep_alive(self) -> None:
        """Tell the server we still work on long-running messages, so it keeps them ours."""
        interval = max(self.ack_wait / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for msg, since in list(self._in_flight.values()):
                if now - since >= interval:
                    await _quietly(msg.in_progress())


def run_consumer(runs: RunRepository, settings: Settings, name: str, filters: Sequence[str], handle: Handler, *,
                 ack_wait: float | None = None, max_ack_pending: int = 1000, retry_delay: float = 2.0) -> Consumer:
    """A service's consumer of run events, with the engine's redelivery settings; what it abandons is
    recorded in the run's stream."""
    async def record(abandoned: MessageAbandoned) -> None:
        await runs.change(abandoned.run_id, lambda run: [abandoned] if run.exists else [])

    return Consumer(runs.store.nc, runs.store.stream, name, filters, handle, abandon=record,
                    ack_wait=settings.ack_wait if ack_wait is None else ack_wait, max_ack_pending=max_ack_pending,
                    max_deliver=settings.max_deliver, retry_delay=retry_delay)


class OneConsumer:
    """A service that is one consumer: starting and stopping it starts and stops that consumer."""

    consumer: Consumer

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self, grace: float = 10.0) -> None:
        await self.consumer.stop(grace)


async def until_recorded(work: Callable[[], Awaitable[T]], what: str,
                         stopping: Callable[[], bool] = lambda: False) -> T:
    """`work()` until it stops failing for lack of the engine (a full store, NATS or a stream leader gone).

    What would be lost by giving up (an attempt's outcome, a delivered event) is kept in
    this process meanwhile; once `stopping()`, the last EngineUnavailable is raised.
    """
    pause = FIRST_PAUSE
    while True:
        try:
            return await work()
        except EngineUnavailable as err:
            if stopping():
                raise
            log.log(logging.WARNING if pause == FIRST_PAUSE else logging.DEBUG, "%s: %s; trying again until it answers",
                    what, err)
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE)


async def _quietly(op: Awaitable[object]) -> None:
    """Acks are best effort: if the connection is gone, redelivery does the rest."""
    try:
        await op
    except Exception as err:  # noqa: BLE001
        log.debug("acknowledgement failed: %s", err)
