"""Can the engine record anything now? Asked of NATS and JetStream themselves, with the reason when not.

Stream and account information cannot tell a server's own storage limit
(`max_file_store`) from room to spare, so the last check is a write: one tiny message to
the probe stream, which keeps only the latest. It goes where every event goes (the
same server's storage, replicated as PB_RUNS is), so it fails as an append would:
full, or with no leader to take it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from events import subjects
from services.errors import EngineUnavailable
from services.jetstream import TRY_TIMEOUT, persist

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
