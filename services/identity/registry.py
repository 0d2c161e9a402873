"""Every token, in memory, kept current by following PB_IDENTITY: verifying is a dict lookup.

Each replica follows the stream with an ordered consumer, so a revocation reaches it in
milliseconds. Because a replica that silently fell behind would accept a revoked token,
it also asks the stream for its last sequence every `check_interval` seconds; it is
`current` only while a check sent at most `max_staleness` seconds ago found it caught up,
on the same connection. A request met while it is not current (the event loop was busy, and
the check's answer waited behind other work) asks for a check at once and waits for one sent
after it came: that one covers every revocation stored before the request. Only if none
confirms within `confirm_seconds` is the token refused (fail closed).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import msgspec
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from events import subjects
from events.identity import decode_token_event
from services.errors import EngineUnavailable
from services.identity.store import IdentityStore
from services.identity.tokens import TokenRecord, evolve
from services.named_consumers import named_jetstream
from services.tasks import stop

log = logging.getLogger(__name__)

USE_RECORD_SECONDS = 60.0
# Writes that a token was used: its id, when, and the credential (the proof, for a writer that asks the identity
# service to write it).
UseWriter = Callable[[str, datetime, str], Awaitable[None]]


class TokenRegistry:
    def __init__(self, store: IdentityStore, *, check_interval: float = 0.25, max_staleness: float = 1.0,
                 confirm_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 write_use: UseWriter | None = None) -> None:
        self.store = store
        self.write_use = write_use or (lambda token_id, at, _credential: store.record_use(token_id, at))
        self.check_interval, self.max_staleness, self.clock = check_interval, max_staleness, clock
        self.confirm_seconds = confirm_seconds
        self.applied = 0                     # stream sequence of the last message applied
        self._tokens: dict[str, TokenRecord] = {}
        self._sub = None
        self._checker: asyncio.Task[None] | None = None
        self._confirmed: tuple[float, int] | None = None   # (when the confirming check was sent, reconnects then)
        self._changed = asyncio.Event()   # set, and replaced, at every change (no lock a cancelled waiter could keep)
        self._check_now = asyncio.Event()
        self._use_written: dict[str, float] = {}
        self._writes: set[asyncio.Task[None]] = set()

    # -- reading ------------------------------------------------------------------------------------

    def get(self, token_id: str) -> TokenRecord | None:
        return self._tokens.get(token_id)

    def tokens(self) -> list[TokenRecord]:
        return sorted(self._tokens.values(), key=lambda r: (r.created.at, r.id))

    @property
    def current(self) -> bool:
        return self._confirmed_since(self.clock() - self.max_staleness)

    def _confirmed_since(self, moment: float) -> bool:
        """A check sent at `moment` or later found this replica caught up, on the connection it follows on now."""
        nc = self.store.nc
        if self._confirmed is None or not nc.is_connected:
            return False
        sent, reconnects = self._confirmed
        return reconnects == nc.stats["reconnects"] and sent >= moment

    def require_current(self) -> None:
        if not self.current:
            raise EngineUnavailable("the token registry is not known to be current (NATS unreachable or the "
                                    "identity stream behind); every token is refused until it is")

    async def confirm_current(self) -> None:
        """At once while current. Else a check is asked for now, and one sent after this call began confirms it
        however long its answer took (a busy loop): waits `confirm_seconds` for one, then refuses as
        `require_current` does."""
        if self.current:
            return
        nc = self.store.nc
        if not nc.is_connected:
            self.require_current()   # refused at once: no check can confirm it now
        asked = self.clock()
        self._check_now.set()
        with contextlib.suppress(TimeoutError):
            await self.until(lambda: self._confirmed_since(asked) or not nc.is_connected, self.confirm_seconds)
        if not self._confirmed_since(asked):
            self.require_current()

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Until `predicate()` holds after some change (a token applied, or the registry confirmed current)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    async def caught_up(self, seq: int, timeout: float = 5.0) -> None:
        """Until this replica has applied stream sequence `seq` (read your own writes)."""
        await self.until(lambda: self.applied >= seq, timeout)

    # -- following --------------------------------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        """Follow the stream from its first message; returns once caught up and current."""
        await self._subscribe()
        self._checker = asyncio.create_task(self._keep_checking())
        await self.until(lambda: self.current, timeout)

    async def stop(self) -> None:
        if self._checker:
            await stop(self._checker)    # cancelled until done: one cancel can be lost on 3.11 (services/tasks.py)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if self._writes:
            await asyncio.wait(self._writes, timeout=2)

    async def _subscribe(self) -> None:
        js = named_jetstream(self.store.nc)
        config = ConsumerConfig(opt_start_seq=self.applied + 1) if self.applied else None
        policy = DeliverPolicy.BY_START_SEQUENCE if self.applied else DeliverPolicy.ALL
        self._sub = await js.subscribe(subjects.TOKEN_SUBJECTS, stream=subjects.IDENTITY_STREAM, cb=self._on_message,
                                       ordered_consumer=True, deliver_policy=policy, config=config)

    async def _on_message(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        if seq <= self.applied:
            return
        try:
            event = decode_token_event(msg.data)
        except msgspec.DecodeError as err:
            record = self._tokens.get(subjects.token_id_of(msg.subject))
            log.error("undecodable identity event %s seq %d: %s%s", msg.subject, seq, err,
                      "; its token is refused from now on" if record is not None else "")
            if record is not None:
                record.unreadable = f"event {seq} ({msg.subject.rsplit('.', 1)[-1]}): {err}"
        else:
            if subjects.token_id_of(msg.subject) != event.token_id:
                log.error("skipping %s seq %d: its token id is not its subject's", msg.subject, seq)
            else:
                record = evolve(self._tokens.get(event.token_id), event, seq)
                if record is not None:
                    self._tokens[record.id] = record
        self.applied = seq
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _keep_checking(self) -> None:
        behind_since: float | None = None
        followed_since = self.store.nc.stats["reconnects"]
        while True:
            sent, reconnects = self.clock(), self.store.nc.stats["reconnects"]
            if reconnects != followed_since and self.store.nc.is_connected:
                # A restarted server forgets the ordered consumer: follow again rather than wait to stall.
                await self._resubscribe()
                followed_since, behind_since = reconnects, None
            try:
                info = await self.store.js.stream_info(subjects.IDENTITY_STREAM)
                last = info.state.last_seq
            except Exception as err:  # noqa: BLE001 - unreachable now: not current until a check succeeds
                log.debug("identity stream check failed: %s", err)
                last = None
                self._notify()      # requests waiting for a check see how the connection stands
            if last is not None and self.applied >= last:
                self._confirmed, behind_since = (sent, reconnects), None
                self._notify()
            elif last is not None:
                behind_since = behind_since or sent
                if self.clock() - behind_since > self.max_staleness:
                    log.warning("token registry stalled at %d of %d; following again", self.applied, last)
                    await self._resubscribe()
                    behind_since = None
            with contextlib.suppress(TimeoutError):   # a request met unconfirmed asks for the next check now
                async with asyncio.timeout(self.check_interval):   # not wait_for, which can lose a cancel
                    await self._check_now.wait()
            self._check_now.clear()

    async def _resubscribe(self) -> None:
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()  # type: ignore[union-attr]
        try:
            await self._subscribe()
        except Exception as err:  # noqa: BLE001 - the next check tries again; meanwhile not current
            log.warning("token registry cannot follow the identity stream: %s", err)

    # -- last used ------------------------------------------------------------------------------------

    def note_use(self, token_id: str, at: datetime, credential: str) -> None:
        """Record a use at most once a minute per token from here (the store dedupes across replicas)."""
        now = self.clock()
        if now - self._use_written.get(token_id, -USE_RECORD_SECONDS) < USE_RECORD_SECONDS:
            return
        self._use_written[token_id] = now
        task = asyncio.create_task(self._write_use(token_id, at, credential))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_use(self, token_id: str, at: datetime, credential: str) -> None:
        try:
            await self.write_use(token_id, at, credential)
        except Exception as err:  # noqa: BLE001 - last-used is informational; verification already succeeded
            log.warning("could not record the use of token %s: %s", token_id, err)
