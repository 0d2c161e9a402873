"""A running step's output, line by line, on core NATS for whoever watches it live.

Not stored: the attempt's event keeps its output for good; this is only the view from
the side while it runs. Lines are redacted like the event (with the secrets the attempt
resolved, and each line of a multi-line secret) and capped per attempt.
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

from nats.aio.client import Client as NATS

from events import subjects
from services.playbook.interpolate import redact

MAX_LIVE_BYTES = 1 << 20      # per attempt; the event keeps the head of the output anyway
MAX_PARTIAL_LINE = 4096       # a line longer than this is sent in pieces
STREAMS = {1: "stdout", 2: "stderr"}


class LiveOutput:
    def __init__(self, nc: NATS, run_id: str, step_id: str, attempt: int, secrets: set[str]) -> None:
        self.nc, self.subject = nc, subjects.live_output(run_id, step_id, attempt)
        self.step_id, self.attempt = step_id, attempt
        self.secrets = secrets | {line for s in secrets for line in s.splitlines() if len(line) >= 4}
        self.partial = {1: b"", 2: b""}
        self.sent = 0
        self._pending: set[asyncio.Future[None]] = set()

    def __call__(self, fd: int, data: bytes) -> None:
        buffered = self.partial.get(fd, b"") + data
        *lines, rest = buffered.split(b"\n")
        if len(rest) > MAX_PARTIAL_LINE:
            lines, rest = [*lines, rest], b""
        self.partial[fd] = rest
        if lines:
            self._send(fd, b"\n".join(lines))

    async def close(self) -> None:
        """Send what is left of unfinished lines, and let the sends finish."""
        for fd, rest in self.partial.items():
            if rest:
                self._send(fd, rest)
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _send(self, fd: int, data: bytes) -> None:
        if self.sent >= MAX_LIVE_BYTES:
            return
        self.sent += len(data)
        text = redact(data.decode(errors="replace"), self.secrets)
        if self.sent >= MAX_LIVE_BYTES:
            text += "\n[live output stops here; the step's event keeps the head of its output]"
        body = json.dumps({"step_id": self.step_id, "attempt": self.attempt, "stream": STREAMS.get(fd, str(fd)),
                           "text": text, "at": datetime.now(timezone.utc).isoformat()})
        sending = asyncio.ensure_future(self.nc.publish(self.subject, body.encode()))
        self._pending.add(sending)
        sending.add_done_callback(self._pending.discard)
