"""Access refused at the doors, for the audit: the newest records of PB_ACCESS, followed live.

PB_ACCESS is bounded (age and size), and so is this view: it keeps the newest `keep`
refusals, read from where they start when the web starts, then as they are recorded. It
is not snapshotted: reading ten thousand small records at start takes a moment.
"""
from __future__ import annotations

import contextlib
import logging
from collections import deque
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from events import subjects
from events.identity import decode_access_refused
from projections.audit import AuditEntry, refusal_entry

log = logging.getLogger(__name__)

KEEP = 10_000


class Refusals:
    def __init__(self, nc: NATS, keep: int = KEEP) -> None:
        self.nc = nc
        self.entries: deque[AuditEntry] = deque(maxlen=keep)
        self._sub: Any = None

    async def start(self) -> None:
        js = self.nc.jetstream()
        try:
            last = (await js.stream_info(subjects.ACCESS_STREAM)).state.last_seq
        except NotFoundError:
            log.warning("no %s stream: refusals will not show in the audit", subjects.ACCESS_STREAM)
            return
        start = max(1, last - (self.entries.maxlen or KEEP) + 1)
        self._sub = await js.subscribe(subjects.REFUSAL_SUBJECTS, stream=subjects.ACCESS_STREAM, cb=self._on_message,
                                       ordered_consumer=True, config=ConsumerConfig(
                                           deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start))

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_message(self, msg: Msg) -> None:
        try:
            refused = decode_access_refused(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("skipping an undecodable refusal on %s", msg.subject)
            return
        self.entries.append(refusal_entry(msg.metadata.sequence.stream, refused))
