"""An outcome cut to fit the event store: what a step produced is recorded capped, with a note, never dropped.

An event must fit one NATS message (1 MiB by default); a step may produce more (an HTTP
body, `max_output_bytes` set high). The longest texts are cut first, each keeping its head
and saying how much went; if the rest still does not fit, the outcome says only how big it
was. Outcomes are redacted before they are capped, so a cut cannot split a secret.
"""
from __future__ import annotations

from typing import Any

import msgspec

ERROR_BYTES = 8192            # an error text is a sentence or a last line; more is cut
EVENT_ROOM = 2048             # bytes of an outcome's event besides its outputs and error
_MARK = "\n[... {} bytes cut to fit the event store]"
_ROUNDS = 12


def capped(outputs: Any, error: str, event_limit: int) -> tuple[Any, str, str]:
    """(outputs, error, note) for an event of at most `event_limit` bytes; the note says what was cut."""
    budget = event_limit - EVENT_ROOM
    error, error_cut = _cut_text(error, ERROR_BYTES)
    room = budget - _size(error)
    size = _size(outputs)
    if size <= room:
        return outputs, error, _note(error_cut, 0, budget)
    keep = max(room // 2, 64)
    for _ in range(_ROUNDS):
        cut = _cut_texts(outputs, keep)
        if _size(cut) <= room:
            return cut, error, _note(error_cut, size - _size(cut), budget)
        keep //= 2
        if keep < 16:
            break
    summary = {"capped": f"the outputs ({size} bytes of JSON) did not fit the event store"}
    return [summary] if isinstance(outputs, list) else summary, error, _note(error_cut, size, budget)


def _note(error_cut: int, outputs_cut: int, budget: int) -> str:
    parts = [f"outputs cut by {outputs_cut} bytes"] if outputs_cut else []
    parts += [f"error cut by {error_cut} bytes"] if error_cut else []
    return f"{' and '.join(parts)} to fit the event store ({budget} bytes)" if parts else ""


def _cut_texts(value: Any, keep: int) -> Any:
    """Every text longer than `keep` bytes cut to its head, throughout the value."""
    if isinstance(value, str):
        return _cut_text(value, keep)[0]
    if isinstance(value, dict):
        return {key: _cut_texts(item, keep) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cut_texts(item, keep) for item in value]
    return value


def _cut_text(text: str, keep: int) -> tuple[str, int]:
    raw = text.encode()
    if len(raw) <= keep:
        return text, 0
    head = raw[:keep].decode(errors="ignore")
    cut = len(raw) - len(head.encode())
    return head + _MARK.format(cut), cut


def _size(value: Any) -> int:
    return len(msgspec.json.encode(value))
