"""A running step's output, line by line, into PB_LOGS for whoever watches it, now or later.

Not the record: the attempt's event keeps its output for good; this is the view from the side
while it runs, kept a while (services/logs.py says how long) so that a late joiner reads from
the first line. Lines are redacted like the event, of every secret the attempt holds, in all its
forms. A secret cut by a chunk boundary or folded over lines is caught whole: lines that end
with the first HELD_AT or more characters of one are held back until what follows shows whether
it is one (or the output ends), and each send is redacted with the end of what was sent before as
context, so the rest of a secret whose first one or two characters went out is masked. Capped per
attempt. The attempt's OutputEnded is published last and, when the attempt printed anything,
acknowledged by the stream, so every line is stored before the event that finishes the attempt
is written (a silent attempt's end is sent without waiting: there is nothing to keep in order).
"""
from __future__ import annotations

import asyncio
import codecs
import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Literal

from nats.aio.client import Client as NATS

from events import subjects
from events.codec import encode
from events.output import OutputEnded, OutputLine
from services.logs import MAX_LINES_PER_ATTEMPT
from services.secrets import redactor_for

log = logging.getLogger(__name__)

MAX_LIVE_BYTES = 1 << 20      # per attempt; the event keeps the head of the output anyway
END_TIMEOUT = 5.0             # seconds for the stream to acknowledge the attempt's OutputEnded
STOPS_HERE = "[live output stops here; the step's event keeps the head of its output]"
MAX_PARTIAL_LINE = 4096       # a line longer than this is sent in pieces
HELD_AT = 3                   # shorter endings look like the start of a secret too often to hold lines back for
STREAMS: dict[int, Literal["stdout", "stderr"]] = {1: "stdout", 2: "stderr"}


class LiveOutput:
    def __init__(self, nc: NATS, run_id: str, step_id: str, attempt: int, secrets: Iterable[str]) -> None:
        self.nc, self.subject = nc, subjects.live_output(run_id, step_id, attempt)
        self.run_id, self.step_id, self.attempt = run_id, step_id, attempt
        self.redactor = redactor_for(secrets)
        self.pending: dict[int, str] = {}
        self.context: dict[int, str] = {}   # the end of what each stream sent, raw
        self.decoders: dict[int, codecs.IncrementalDecoder] = {}
        self.sent = 0
        self.lines = 0
        self.truncated = False
        self._pending: set[asyncio.Future[None]] = set()

    def __call__(self, fd: int, data: bytes) -> None:
        decoder = self.decoders.get(fd) or self.decoders.setdefault(
            fd, codecs.getincrementaldecoder("utf-8")("replace"))
        pending = self.pending.get(fd, "") + decoder.decode(data)
        end = pending.rfind("\n") + 1                      # whole lines go out
        if end == 0 and len(pending) > MAX_PARTIAL_LINE:   # and a very long line in pieces
            end = len(pending)
        if end and self.redactor:
            end = self._before_secret(pending, end)
        self.pending[fd] = pending[end:]
        if end:
            self._send(fd, pending[:end])

    async def close(self) -> None:
        """Send what is left of unfinished lines, then the end, once the stream has stored them all."""
        for fd, decoder in self.decoders.items():
            if rest := self.pending.pop(fd, "") + decoder.decode(b"", final=True):
                self._send(fd, rest)
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        end = OutputEnded(run_id=self.run_id, step_id=self.step_id, attempt=self.attempt, lines=self.lines,
                          truncated=self.truncated, at=datetime.now(timezone.utc))
        try:
            if not self.lines:       # nothing to store before the step's end: not worth a round trip on every step
                await self.nc.publish(self.subject, encode(end))
                return
            await self.nc.jetstream().publish(self.subject, encode(end), timeout=END_TIMEOUT)
        except Exception as err:  # noqa: BLE001 - the step's outcome never depends on its live view
            log.warning("the end of %s's live output (attempt %d) was not stored: %s", self.step_id, self.attempt, err)

    def _before_secret(self, pending: str, end: int) -> int:
        """Where to stop sending so as not to send the beginning of a secret: at the start of its line if that
        line can wait, else (a very long line) just before it."""
        keep = self.redactor.safe_end(pending[:end], HELD_AT)
        if keep == end:
            return end
        line_start = pending.rfind("\n", 0, keep) + 1
        return line_start if line_start or len(pending) <= MAX_PARTIAL_LINE else keep

    def _send(self, fd: int, text: str) -> None:
        if self.truncated:
            return
        self.sent += len(text)
        if self.redactor:
            before = self.context.get(fd, "")
            self.context[fd] = (before + text)[-self.redactor.reach:]
            text = self.redactor.text(before + text, len(before))
        stream = STREAMS.get(fd, "stdout")
        for line in text.removesuffix("\n").split("\n"):
            self._publish(line, stream)
            if self.sent >= MAX_LIVE_BYTES or self.lines >= MAX_LINES_PER_ATTEMPT:
                self.truncated = True
                self._publish(STOPS_HERE, stream)
                return

    def _publish(self, text: str, stream: Literal["stdout", "stderr"]) -> None:
        self.lines += 1
        line = OutputLine(run_id=self.run_id, step_id=self.step_id, attempt=self.attempt, stream=stream, text=text,
                          at=datetime.now(timezone.utc))
        sending = asyncio.ensure_future(self.nc.publish(self.subject, encode(line)))
        self._pending.add(sending)
        sending.add_done_callback(self._pending.discard)
