"""Messages the server stopped delivering because no one acknowledged them: recorded as given up on too.

A service gives up on a message itself when its handler fails every time (services/runtime.py).
A message whose handler never answered (its process died, or hung, before acknowledging it,
`max_deliver` times) is given up by the server, which says so in an advisory and nothing else:
the run service records it as `MessageAbandoned`, like a handler's failure, so the safety net
reacts to it as well. One replica takes each advisory (a queue group); an advisory sent while
no run service listens is lost (advisories are not stored), and the run waits, as before.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from events import subjects
from events.codec import decode_event
from events.run import MessageAbandoned
from services.aggregates import RunRepository
from services.domain.run.abandoned import DRIVING
from services.runtime import until_recorded

log = logging.getLogger(__name__)


def advisories(stream: str) -> str:
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.*"


class Unacknowledged:
    def __init__(self, nc: NATS, runs: RunRepository) -> None:
        self.nc, self.runs = nc, runs
        self.stream = runs.store.stream
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(advisories(self.stream), queue="unacknowledged", cb=self._on_advisory)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_advisory(self, msg: Msg) -> None:
        try:
            advisory = json.loads(msg.data)
            consumer, seq, deliveries = advisory["consumer"], int(advisory["stream_seq"]), int(advisory["deliveries"])
        except (ValueError, KeyError, TypeError) as err:
            log.warning("an advisory on %s that cannot be read: %s", msg.subject, err)
            return
        if consumer not in DRIVING:
            return
        try:
            await self._record(consumer, seq, deliveries)
        except Exception:   # the log keeps it when the stream cannot
            log.exception("could not record that %s was not acknowledged (message %d)", consumer, seq)

    async def _record(self, consumer: str, seq: int, deliveries: int) -> None:
        stored = await self.nc.jetstream().get_msg(self.stream, seq, direct=True)
        assert stored.subject is not None
        try:
            event = decode_event(stored.data or b"")
            step_id, attempt = getattr(event, "step_id", None), getattr(event, "attempt", None)
        except Exception:  # noqa: BLE001 - an unreadable one is recorded all the same
            step_id, attempt = None, None
        record = MessageAbandoned(
            run_id=subjects.run_id_of(stored.subject), at=datetime.now(timezone.utc), consumer=consumer, seq=seq,
            subject=stored.subject, deliveries=deliveries,
            error="never acknowledged (its handler's process stopped or hung each time)",
            step_id=step_id if isinstance(step_id, str) else None,
            attempt=attempt if isinstance(attempt, int) else None)
        log.error("%s: message %d (%s) was never acknowledged; giving it up", consumer, seq, stored.subject)
        await until_recorded(lambda: self.runs.change(record.run_id, lambda run: [record] if run.exists else []),
                             f"recording that {consumer} never acknowledged message {seq}")
