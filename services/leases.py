"""Leases on running attempts, in JetStream stream PB_LEASES: short, renewed, fenced.

One subject per attempt, `pb.lease.<run>.<step>.<s|r><attempt>` (s: the step's action, r:
its rollback), keeping its last record only. Every write is conditional on the subject's
last sequence, so of two writers exactly one wins: a claim (nothing there, or a released
lease), a renewal (on the holder's own last write), a takeover (on the last write the taker
saw, after a whole lease of silence) and a release. Records carry their state and holder in
headers too, so a watcher can follow every lease reading headers only. docs/execution.md
says what this guarantees.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DeliverPolicy
from nats.js.errors import APIError

from events.subjects import PREFIX
from services.jetstream import ensure_stream, is_conflict, last_message
from services.named_consumers import named_jetstream

LEASE_STREAM = "PB_LEASES"
LEASE_SUBJECTS = f"{PREFIX}.lease.>"
RELEASED_KEPT = "60s"          # a released record stays this long (watchers that missed it need none)
STATE_HEADER, HOLDER_HEADER = "Pb-Lease", "Pb-Holder"
TIMEOUT = 5.0
Purpose = Literal["run", "takeover"]     # a lease to run the attempt, or to record it interrupted


@dataclass(frozen=True, slots=True)
class AttemptId:
    """One attempt of a step's action (or of its rollback): what a lease is on, and its idempotency key."""

    run_id: str
    step_id: str
    number: int
    rollback: bool = False

    @property
    def key(self) -> str:
        """`run/step/attempt` (`run/step/rollback/attempt`): unique per attempt, given to its processes."""
        return f"{self.run_id}/{self.step_id}/{'rollback/' if self.rollback else ''}{self.number}"

    @property
    def subject(self) -> str:
        return f"{PREFIX}.lease.{self.run_id}.{self.step_id}.{'r' if self.rollback else 's'}{self.number}"


class LeaseRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A lease as stored: who holds it, and where that process runs (to find its leftovers)."""

    state: Literal["held", "released"]
    holder: str                     # the executor's name
    purpose: Purpose = "run"
    run_id: str
    step_id: str
    attempt: int
    rollback: bool = False
    seconds: float                  # the lease's length: the holder stops its step before it lapses
    host: str = ""
    boot_id: str = ""
    pidns: str = ""
    pid: int = 0
    pid_started: int = 0

    @property
    def attempt_id(self) -> AttemptId:
        return AttemptId(self.run_id, self.step_id, self.attempt, self.rollback)


@dataclass(frozen=True, slots=True)
class Lease:
    subject: str
    seq: int                        # of its last record: the next write expects it
    record: LeaseRecord


class LeaseStore:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.js = named_jetstream(nc, timeout=TIMEOUT)     # its watcher's ordered consumers are named: pb-executor

    async def ensure_stream(self, replicas: int = 1) -> None:
        """Create PB_LEASES, or bring its configuration up to date. Idempotent."""
        await ensure_stream(self.nc, {
            "name": LEASE_STREAM, "subjects": [LEASE_SUBJECTS], "storage": "file", "retention": "limits",
            "max_msgs_per_subject": 1, "discard": "old", "num_replicas": replicas, "allow_direct": True,
            "allow_msg_ttl": True, "duplicate_window": 10_000_000_000,
        })

    async def claim(self, attempt: AttemptId, record: LeaseRecord) -> Lease | None:
        """The lease on a fresh attempt, or None if someone holds it."""
        subject = attempt.subject
        seq = await self._write(subject, record, 0)
        if seq is not None:
            return Lease(subject, seq, record)
        last = await self.read(subject)
        if last is None or last.record.state != "released":
            return None      # held by someone (or it just vanished: the next delivery tries again)
        seq = await self._write(subject, record, last.seq)
        return None if seq is None else Lease(subject, seq, record)

    async def renew(self, lease: Lease) -> Lease | None:
        """The lease renewed, or None if it is no longer ours (taken after it lapsed)."""
        seq = await self._write(lease.subject, lease.record, lease.seq)
        if seq is not None:
            return replace(lease, seq=seq)
        last = await self.read(lease.subject)   # our earlier write may have landed with its ack lost
        if last is not None and last.record == lease.record:
            return last
        return None

    async def take(self, seen: Lease, record: LeaseRecord) -> Lease | None:
        """Take a lease nobody renewed since `seen`; None if it moved on meanwhile."""
        seq = await self._write(seen.subject, record, seen.seq)
        return None if seq is None else Lease(seen.subject, seq, record)

    async def release(self, lease: Lease) -> None:
        """Let go (no wait for the store's answer: a release lost is a lease that lapses and is found done)."""
        record = msgspec.structs.replace(lease.record, state="released")
        headers = {**self._headers(record, lease.seq), "Nats-TTL": RELEASED_KEPT}
        await self.nc.publish(lease.subject, msgspec.json.encode(record), headers=headers)

    async def read(self, subject: str) -> Lease | None:
        msg = await last_message(self.nc, LEASE_STREAM, subject, f"reading the lease {subject}", within=TIMEOUT)
        headers = msg.headers or {}
        if headers.get("Status"):
            return None
        return Lease(subject, int(headers["Nats-Sequence"]), msgspec.json.decode(msg.data, type=LeaseRecord))

    async def watch(self, seen: Callable[[str, int, str, str], Awaitable[None]], heartbeat: float) -> Subscription:
        """Every lease record from now on, and the last of each lease there is: `seen(subject, seq, state, holder)`."""
        async def on_record(msg: Msg) -> None:
            headers = msg.headers or {}
            await seen(msg.subject, msg.metadata.sequence.stream, headers.get(STATE_HEADER, ""),
                       headers.get(HOLDER_HEADER, ""))

        return await self.js.subscribe(LEASE_SUBJECTS, cb=on_record, ordered_consumer=True, headers_only=True,
                                       deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, idle_heartbeat=heartbeat)

    async def _write(self, subject: str, record: LeaseRecord, expected: int) -> int | None:
        """Store the record if the subject's last sequence is `expected`; its sequence, or None if it is not."""
        try:
            ack = await self.js.publish(subject, msgspec.json.encode(record), headers=self._headers(record, expected))
        except APIError as err:
            if is_conflict(err):   # someone else wrote since `expected`
                return None
            raise
        return ack.seq

    @staticmethod
    def _headers(record: LeaseRecord, expected: int) -> dict[str, str]:
        return {"Nats-Expected-Last-Subject-Sequence": str(expected), STATE_HEADER: record.state,
                HOLDER_HEADER: record.holder}
