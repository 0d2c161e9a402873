"""What JetStream's failures mean to the engine, said once: ask again, the store is full, or a real conflict.

A replicated stream has no leader for a few seconds after its leader dies or steps down:
publishes time out or find no responders (503). They are asked again, with the same
`Nats-Msg-Id` (the caller keeps it), so a publish the old leader stored is recognised
as a duplicate and answered with its original sequence. Only a bounded time is spent
so: past it, the engine is unavailable and says so. A full store is unavailable at once.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import APIError, NoStreamResponseError

from services.errors import EngineUnavailable, PlaybookError, TooLarge

log = logging.getLogger(__name__)

T = TypeVar("T")

WRONG_LAST_SEQUENCE = 10071          # "wrong last sequence: N": someone appended since we read
WRONG_LAST_SEQUENCE_CONSTANT = 10164  # the same, said by a clustered leader with proposals in flight
LAST_SEQUENCE_NOT_READY = 10163      # a new leader cannot check the expected sequence yet: ask again
STREAM_NAME_IN_USE = 10058           # the stream exists with another configuration
NO_STORAGE_FOR_STREAM = 10047        # its max_bytes is more than the server's storage has left to reserve
STREAM_NOT_FOUND = 10059
STORE_FULL = {10023: "JetStream has no storage left (insufficient resources)",
              10027: "the account's JetStream storage limit is reached",
              10047: "JetStream has no storage left for the stream"}
RETRY_WITHIN = 20.0                  # seconds: a killed leader is replaced in about 5 to 7
TRY_TIMEOUT = 2.0                    # one try; a slow answer is asked again, harmlessly
# One message by direct get: any replica answers, in milliseconds, but a frozen one never does (until its
# routes time out): a read that hears nothing this long asks again, and another replica may answer.
DIRECT_TRY = 0.5
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 1.0
WARN_EVERY = 1.0                     # seconds: an election makes every writer wait; one line tells it
_last_warning = 0.0


class Unanswered(Exception):
    """Nothing answered this time (no leader, no replica caught up): worth asking again."""


def is_conflict(err: Exception) -> bool:
    return isinstance(err, APIError) and err.err_code in (WRONG_LAST_SEQUENCE, WRONG_LAST_SEQUENCE_CONSTANT)


def conflict_last(err: APIError) -> int:
    """The aggregate's last sequence a 10071 names ("wrong last sequence: 42"); 0 when not said."""
    _, _, number = (err.description or "").rpartition(":")
    return int(number) if number.strip().isdigit() else 0


def full_store(err: Exception) -> str | None:
    """Why the store takes nothing more, if that is what `err` says."""
    if isinstance(err, APIError) and err.err_code in STORE_FULL:
        return STORE_FULL[err.err_code]
    return None


def transient(err: Exception) -> bool:
    """An election, a restart or a reconnection in progress: the same request may succeed soon."""
    if isinstance(err, APIError):
        return err.err_code == LAST_SEQUENCE_NOT_READY or (err.code == 503 and full_store(err) is None)
    return isinstance(err, (Unanswered, TimeoutError, NoStreamResponseError, nats.errors.NoRespondersError,
                            nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                            nats.errors.StaleConnectionError, nats.errors.OutboundBufferLimitError))


async def persist(call: Callable[[], Awaitable[T]], what: str, *, within: float = RETRY_WITHIN) -> T:
    """`call()` until it answers, through elections and reconnections, for at most `within` seconds.

    Library errors leave as ours: a full store and silence as EngineUnavailable, a message
    over the server's limit as TooLarge; anything else (a conflict among them) as it came.
    """
    deadline = time.monotonic() + within
    pause = FIRST_PAUSE
    tries = 0
    while True:
        tries += 1
        try:
            return await call()
        except nats.errors.MaxPayloadError as err:
            raise TooLarge(f"{what}: {err}") from err
        except Exception as err:
            if (reason := full_store(err)) is not None:
                raise EngineUnavailable(f"{what}: the event store is full: {reason}; "
                                        "free space or raise the limit, then try again") from err
            if not transient(err):
                raise
            if time.monotonic() + pause > deadline:
                raise EngineUnavailable(f"{what}: JetStream did not answer within {within:g}s ({_said(err)}); "
                                        "is NATS up, and does the stream have a leader?") from err
            _tell(f"{what}: {_said(err)}; asking again (try {tries + 1})")
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE)


async def api_request(nc: NATS, subject: str, body: bytes) -> dict[str, Any]:
    """A JetStream API request's JSON answer, asked again while a cluster elects its leaders (503)."""
    async def ask() -> dict[str, Any]:
        reply: dict[str, Any] = json.loads((await nc.request(subject, body, timeout=TRY_TIMEOUT)).data)
        if (reply.get("error") or {}).get("code") == 503:
            raise Unanswered(reply["error"].get("description", ""))
        return reply
    return await persist(ask, subject)


async def last_message(nc: NATS, stream: str, subject: str, what: str, *, within: float = RETRY_WITHIN) -> Msg:
    """The direct get of the last message on `subject` in `stream` (a 404 status when there is none), asked
    again while replicas stay silent."""
    request = json.dumps({"last_by_subj": subject}).encode()
    return await persist(lambda: nc.request(f"$JS.API.DIRECT.GET.{stream}", request, timeout=DIRECT_TRY), what,
                         within=within)


def _tell(message: str) -> None:
    """A warning at most every WARN_EVERY seconds (the rest at debug level): hundreds of writers wait at once."""
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY:
        _last_warning = now
        log.warning("%s", message)
    else:
        log.debug("%s", message)


def _said(err: Exception) -> str:
    text = str(err) or getattr(err, "description", "") or ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


async def ensure_stream(nc: NATS, config: dict[str, Any], *, sized_by: str = "") -> None:
    """Create a stream, or bring its configuration up to date; asked again through elections. Idempotent.

    A server checks a create's storage reservation before its name: creating a stream that exists again
    reserves its max_bytes twice, and is refused when the server has less than that left. So a refused create
    is tried as an update; only if there is no such stream is the refusal the answer. `sized_by` names the
    setting of its max_bytes, for that answer.
    """
    name, body = config["name"], json.dumps(config).encode()
    reply = await api_request(nc, f"$JS.API.STREAM.CREATE.{name}", body)
    error = reply.get("error") or {}
    if error.get("err_code") in (STREAM_NAME_IN_USE, NO_STORAGE_FOR_STREAM):
        updated = await api_request(nc, f"$JS.API.STREAM.UPDATE.{name}", body)
        if (updated.get("error") or {}).get("err_code") != STREAM_NOT_FOUND:
            error = updated.get("error") or {}
    if not error:
        return
    why = f"cannot set up stream {name}: {error.get('description')}"
    if error.get("err_code") == NO_STORAGE_FOR_STREAM and sized_by:
        why += (f": it reserves {config.get('max_bytes', 0):,} bytes of the server's JetStream storage (its "
                f"max_file_store); give the server more, or set ${sized_by} lower")
    raise PlaybookError(why)
