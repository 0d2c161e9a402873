"""Can the engine record anything now? Asked of NATS and JetStream themselves, with the reason when not.

Stream and account information cannot tell a server's own storage limit
(`max_file_store`) from room to spare, so the last check is a write: one tiny message to
the probe stream, which keeps only the latest. It goes where every event goes (the
same server's storage, replicated as PB_RUNS is), so it fails as an append would:
full, or with no leader to take it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from events import subjects
from services.errors import EngineUnavailable
from services.jetstream import TRY_TIMEOUT, persist

log = logging.getLogger(__name__)

FRESH_FOR = 1.0      # seconds an answer is reused: readiness probes do not each write


@dataclass(frozen=True, slots=True)
class Readiness:
    problem: str | None        # why nothing can be recorded now; None when it can
    checked_at: float


class StoreReadiness:
    def __init__(self, nc: NATS, stream: str = subjects.RUNS_STREAM) -> None:
        self.nc, self.stream = nc, stream
        self._last = Readiness("not checked yet", 0.0)

    async def problem(self) -> str | None:
        """None when the stream takes writes; else a sentence that says why not."""
        if time.monotonic() - self._last.checked_at > FRESH_FOR:
            self._last = Readiness(await self._check(), time.monotonic())
        return self._last.problem

    async def _check(self) -> str | None:
        if not self.nc.is_connected:
            return f"NATS is not connected (reconnecting to {self.nc.connected_url or 'the configured servers'})"
        js = self.nc.jetstream(timeout=TRY_TIMEOUT)
        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            return f"the stream {self.stream} is missing: start the engine (`playbook up`) to create it"
        except Exception as err:  # noqa: BLE001 - any failure here is the reason, said in the answer
            return f"the stream {self.stream} does not answer ({type(err).__name__}): no leader, or JetStream is down"
        config, state = info.config, info.state
        if config.max_bytes and config.max_bytes > 0 and state.bytes >= config.max_bytes:
            return f"the stream {self.stream} is full: {state.bytes:,} of its max_bytes {config.max_bytes:,}"
        try:
            await persist(lambda: js.publish(subjects.PROBE_SUBJECT, b""), "readiness probe", within=TRY_TIMEOUT)
        except EngineUnavailable as err:
            return str(err)
        except NotFoundError:
            return f"the stream {subjects.PROBE_STREAM} is missing: start the engine (`playbook up`) to create it"
        return None


# The streams a door that makes none (the web server under its own login) needs before it serves: the engine's
# services make them all at their start.
DOOR_STREAMS = (subjects.RUNS_STREAM, subjects.LOGS_STREAM, subjects.CATALOG_STREAM, subjects.IDENTITY_STREAM,
                subjects.ACCESS_STREAM)
SAY_AGAIN_EVERY = 30.0      # seconds between the lines that say what a door still waits for


async def wait_for_streams(nc: NATS, names: tuple[str, ...] = DOOR_STREAMS, *, pause: float = 0.5,
                           maker: str = "the engine's services (`playbook up`, or compose's identity and run "
                                        "services)") -> None:
    """Until every stream named is there, saying which are not (at once, then every SAY_AGAIN_EVERY s): a web
    server (or an executor under its own login) started before the engine waits for it, as a client would, rather
    than make streams its login may not. `maker`: whom to start for them."""
    said_at = None
    js = nc.jetstream(timeout=TRY_TIMEOUT)
    while True:
        missing = []
        for name in names:
            try:
                await js.stream_info(name)
            except NotFoundError:
                missing.append(name)
            except nats.errors.TimeoutError:
                missing.append(f"{name} (no answer)")
        if not missing:
            if said_at is not None:
                log.info("the engine's streams are there now: %s", ", ".join(names))
            return
        if said_at is None or time.monotonic() - said_at >= SAY_AGAIN_EVERY:
            said_at = time.monotonic()
            log.warning("waiting for the engine to create its streams (%s missing): start %s; this process makes "
                        "none", ", ".join(missing), maker)
        await asyncio.sleep(pause)


async def wait_for_advancer(nc: NATS, outcomes: tuple[str, ...], *, pause: float = 0.5) -> None:
    """Until the run service's advancer follows these step outcomes, saying so meanwhile: an executor under its own
    login records its steps and advances no run, so it takes no work while no run service would advance after it
    (a `playbook up` advances in its own executor's decisions, and its advancer follows none)."""
    said_at = None
    js = nc.jetstream(timeout=TRY_TIMEOUT)
    while True:
        try:
            config = (await js.consumer_info(subjects.RUNS_STREAM, "advancer")).config
            missing = sorted(set(outcomes) - set(config.filter_subjects or [config.filter_subject or ""]))
        except NotFoundError:
            missing = ["the advancer consumer"]
        except nats.errors.TimeoutError:
            missing = ["an answer about the advancer consumer"]
        if not missing:
            if said_at is not None:
                log.info("a run service advances runs after executors elsewhere now")
            return
        if said_at is None or time.monotonic() - said_at >= SAY_AGAIN_EVERY:
            said_at = time.monotonic()
            log.warning("waiting for a run service that advances runs after executors elsewhere (`python -m "
                        "services.run`, compose's run service; it does not follow %s): this executor, under its own "
                        "login, records its steps and advances none, and `playbook up` advances only after its own "
                        "executor (give this one the engine's login beside `playbook up`)", ", ".join(missing))
        await asyncio.sleep(pause)
