"""Where identity lives on JetStream: token events in PB_IDENTITY, refusals in PB_ACCESS.

Two streams, because they must be kept differently. Token lifecycles are tiny and kept
forever, one message per subject: a token is created once and revoked once, and its
`TokenUsed` subject keeps only the latest use, so last-used costs one message per token
whatever the traffic. Refusals are bounded by age and size, so a flood of them can
never fill the disk that runs live on. Neither is in PB_RUNS: clients and agents read
PB_RUNS, and must not read secret hashes or grants.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from nats.aio.client import Client as NATS

from events import subjects
from events.codec import encode
from events.identity import AccessRefused, TokenEvent, TokenUsed, decode_token_event
from services.errors import ConcurrencyConflict
from services.identity.tokens import TokenRecord, evolve
from services.jetstream import ensure_stream
from services.settings import ACCESS_MAX_BYTES
from services.store import EventStore

log = logging.getLogger(__name__)

API_TIMEOUT = 5.0
CONFLICT_RETRIES = 10
REFUSALS_MAX_AGE_NS = 90 * 24 * 3600 * 10**9


def stream_configs(replicas: int = 1, refusals_max_bytes: int = ACCESS_MAX_BYTES) -> list[dict]:
    common = {"storage": "file", "retention": "limits", "num_replicas": replicas, "max_msg_size": 64 * 1024,
              "discard": "old"}
    return [
        {**common, "name": subjects.IDENTITY_STREAM, "subjects": [subjects.TOKEN_SUBJECTS], "max_msgs_per_subject": 1,
         "allow_direct": True, "duplicate_window": 120 * 10**9},
        {**common, "name": subjects.ACCESS_STREAM, "subjects": [subjects.REFUSAL_SUBJECTS, subjects.BACKUP_SUBJECTS],
         "max_age": REFUSALS_MAX_AGE_NS, "max_bytes": refusals_max_bytes},
    ]


class IdentityStore:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.events = EventStore(nc, subjects.IDENTITY_STREAM)
        self.js = nc.jetstream(timeout=API_TIMEOUT)

    async def ensure_streams(self, replicas: int = 1, refusals_max_bytes: int = ACCESS_MAX_BYTES) -> None:
        """Create PB_IDENTITY and PB_ACCESS, or bring their configuration up to date. Idempotent."""
        for config in stream_configs(replicas, refusals_max_bytes):
            await ensure_stream(self.nc, config, sized_by="PLAYBOOK_ACCESS_MAX_BYTES")

    async def load(self, token_id: str) -> tuple[TokenRecord | None, int]:
        """The token as recorded now, and the last sequence on its subjects (uses included)."""
        envelopes, last = await self.events.load_aggregate(f"{subjects.token(token_id)}.>", decode_token_event)
        record = None
        for seq, event in envelopes:
            record = evolve(record, event, seq)
        return record, last

    async def change(self, token_id: str,
                     decide: Callable[[TokenRecord | None], list[TokenEvent]]) -> tuple[list[TokenEvent], int]:
        """Decide on the token's latest state and append; the events and the last sequence written."""
        for _ in range(CONFLICT_RETRIES):
            record, expected = await self.load(token_id)
            events = decide(record)
            try:
                sequences = await self.events.append_aggregate(subjects.token(token_id), events, expected)
            except ConcurrencyConflict:
                continue
            return events, (sequences[-1] if sequences else expected)
        raise ConcurrencyConflict(token_id)

    async def record_use(self, token_id: str, at: datetime) -> None:
        """One `TokenUsed` per token per minute across every replica: the minute is in the message id."""
        minute = int(at.timestamp() // 60)
        await self.js.publish(f"{subjects.token(token_id)}.TokenUsed", encode(TokenUsed(at=at, token_id=token_id)),
                              headers={"Nats-Msg-Id": f"used.{token_id}.{minute}"})

    async def record_refusal(self, refused: AccessRefused) -> None:
        """Best effort: a refusal stands even when its record cannot be written."""
        try:
            await self.js.publish(subjects.access_refused(refused.door), encode(refused))
        except Exception as err:  # noqa: BLE001 - NATS down or the stream full: log, refuse anyway
            log.warning("could not record %s refused to %s: %s", refused.action, refused.principal, err)
