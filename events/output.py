"""A running attempt's output, line by line, on `pb.output.<run_id>.<step_id>.<attempt>` (stream PB_LOGS).

Not events of the run (the attempt's StepSucceeded or StepFailed keeps its output for good):
what watching it run shows, kept for a while so that whoever joins late still reads from the
first line. Every line of an attempt is stored before its OutputEnded, and that before the
event that finishes the attempt.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec


class OutputLine(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """One line the attempt printed (a very long one in pieces), redacted like its event."""

    run_id: str
    step_id: str
    attempt: int
    stream: Literal["stdout", "stderr"]
    text: str
    at: datetime


class OutputEnded(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """Nothing more comes for the attempt: `lines` were sent, fewer than it printed if `truncated`."""

    run_id: str
    step_id: str
    attempt: int
    lines: int
    truncated: bool = False
    at: datetime


AnyOutput = OutputLine | OutputEnded
OUTPUT_TYPES: tuple[type[msgspec.Struct], ...] = AnyOutput.__args__
_decoder = msgspec.json.Decoder(AnyOutput)


def decode_output(data: bytes) -> OutputLine | OutputEnded:
    return _decoder.decode(data)
