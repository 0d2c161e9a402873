"""Identity's records for the audit, the newest of each kind, read when the web starts and then followed live:
access refused at the doors (PB_ACCESS), and tokens issued and revoked, dashboard sign-ins and sign-outs among
them (PB_IDENTITY).

Both streams are bounded (PB_ACCESS by age and size, PB_IDENTITY keeps a token's latest record of each kind),
and so are these views: each keeps the newest `keep` entries. They are not snapshotted: reading ten thousand
small records at start takes a moment.
"""
from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from events import subjects
from events.codec import held_to
from events.identity import BackupTaken, TokenCreated, TokenRevoked, decode_access_record, decode_token_event
from projections.audit import AuditEntry, backup_entry, refusal_entry, token_entry
from services.read import named_jetstream

log = logging.getLogger(__name__)

KEEP = 10_000


class Records:
    """The newest `keep` audit entries that `entry` makes of a stream's messages on `filter_subject`."""

    def __init__(self, nc: NATS, stream: str, filter_subject: str,
                 entry: Callable[[int, str, bytes], AuditEntry | None], keep: int = KEEP) -> None:
        self.nc, self.stream, self.filter_subject, self.entry = nc, stream, filter_subject, entry
        self.entries: deque[AuditEntry] = deque(maxlen=keep)
        self._sub: Any = None

    async def start(self) -> None:
        js = named_jetstream(self.nc)
        try:
            last = (await js.stream_info(self.stream)).state.last_seq
        except NotFoundError:
            log.warning("no %s stream: its records will not show in the audit", self.stream)
            return
        start = max(1, last - (self.entries.maxlen or KEEP) + 1)
        self._sub = await js.subscribe(self.filter_subject, stream=self.stream, cb=self._on_message,
                                       ordered_consumer=True, config=ConsumerConfig(
                                           deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start))

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_message(self, msg: Msg) -> None:
        try:
            entry = self.entry(msg.metadata.sequence.stream, msg.subject, msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("skipping an undecodable record on %s", msg.subject)
            return
        if entry is not None:
            self.entries.append(entry)


def refusals(nc: NATS, keep: int = KEEP) -> Records:
    """PB_ACCESS: access refused at the doors, and backups taken."""
    return Records(nc, subjects.ACCESS_STREAM, subjects.IDENTITY_SUBJECTS, _access_entry, keep)


def _access_entry(seq: int, subject: str, data: bytes) -> AuditEntry:
    # Held to its subject: pb-web may write refusals, and a backup's body on a refusal's subject is no backup.
    record = held_to(subject, decode_access_record(data))
    return backup_entry(seq, record) if isinstance(record, BackupTaken) else refusal_entry(seq, record)


def token_acts(nc: NATS, keep: int = KEEP) -> Records:
    return Records(nc, subjects.IDENTITY_STREAM, subjects.TOKEN_SUBJECTS, _TokenActs(keep), keep)


class _TokenActs:
    """Entries of token records; remembers the tokens it met, so that a revocation says whose token it ended."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.created: OrderedDict[str, TokenCreated] = OrderedDict()

    def __call__(self, seq: int, subject: str, data: bytes) -> AuditEntry | None:
        event = held_to(subject, decode_token_event(data))
        if isinstance(event, TokenCreated):
            self.created[event.token_id] = event
            if len(self.created) > self.keep:
                self.created.popitem(last=False)
        elif not isinstance(event, TokenRevoked):
            return None      # a use: its time is in `playbook token list`, not an act
        return token_entry(seq, event, self.created.get(event.token_id))
