"""Step logs: the stdout, stderr and error text each attempt left in its events.

One entry per stream per action: a step's own attempt, each of its rollback actions and
an error handler's remediation. Text is kept as captured (the executor already redacted
it); lines are not split, so an entry is exactly what the action printed.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import msgspec

from events.run import (
    RunEvent, StepFailed, StepRemediated, StepRemediationFailed, StepRollbackFailed, StepRolledBack,
    StepSucceeded,
)

Phase = Literal["step", "rollback", "remediation"]
Stream = Literal["stdout", "stderr", "error"]
_CAPTURED: tuple[Stream, ...] = ("stdout", "stderr")


class LogEntry(msgspec.Struct, kw_only=True):
    seq: int
    at: datetime
    run_id: str
    step_id: str
    attempt: int
    phase: Phase
    stream: Stream
    text: str


def log_entries(seq: int, event: RunEvent) -> list[LogEntry]:
    """The log text one event carries, stdout then stderr then the error; [] for any other event."""
    phase: Phase
    match event:
        case StepSucceeded():
            phase, outputs, error = "step", [event.outputs], ""
        case StepFailed():
            phase, outputs, error = "step", [event.outputs], event.error
        case StepRolledBack():
            phase, outputs, error = "rollback", _each(event.outputs), ""
        case StepRollbackFailed():
            phase, outputs, error = "rollback", _each(event.outputs), event.error
        case StepRemediated():
            phase, outputs, error = "remediation", [event.outputs], ""
        case StepRemediationFailed():
            phase, outputs, error = "remediation", [], event.error
        case _:
            return []
    texts = [(stream, _text(out.get(stream))) for out in outputs if isinstance(out, dict) for stream in _CAPTURED]
    texts.append(("error", _text(error)))
    return [LogEntry(seq=seq, at=event.at, run_id=event.run_id, step_id=event.step_id, attempt=event.attempt,
                     phase=phase, stream=stream, text=text)
            for stream, text in texts if text]


def logs_of(envelopes: Iterable[tuple[int, RunEvent]], step_id: str | None = None,
            attempt: int | None = None) -> list[LogEntry]:
    """Every log entry of these events in their order, of one step and attempt if asked."""
    return [entry for seq, event in envelopes for entry in log_entries(seq, event)
            if (step_id is None or entry.step_id == step_id) and (attempt is None or entry.attempt == attempt)]


def _each(outputs: Any) -> list[Any]:
    """Rollback outputs are one dict per rollback action; tolerate a lone dict too."""
    if isinstance(outputs, list):
        return outputs
    return [outputs]


def _text(value: Any) -> str:
    """Captured text as a string: bytes decoded, numbers spelled out, anything else (None, nested) dropped."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode(errors="replace")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""
