"""The one codec: msgspec JSON for events and commands, nesting bounded (events/json_limits.py)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import msgspec

from events.commands import AnyCommand, Reply
from events.json_limits import decode_json, stored_decoder
from events.run import AnyRunEvent, RunEvent, Unreadable

_encoder = msgspec.json.Encoder()
decode_event: Callable[[bytes], RunEvent] = stored_decoder(AnyRunEvent)
decode_reply: Callable[[bytes], Reply] = stored_decoder(Reply)      # an answer of the engine

DecodeError = msgspec.DecodeError
NEVER = datetime.min.replace(tzinfo=timezone.utc)    # when an unreadable event does not say when it happened


class _When(msgspec.Struct):
    at: datetime | None = None


def decode_stored(data: bytes, run_id: str, stored_type: str) -> RunEvent:
    """A run's stored event, or `Unreadable` saying why this version cannot read it: a reader that
    folds or shows a run never skips one unseen (an event of a newer engine, a field of another shape)."""
    try:
        return decode_event(data)
    except msgspec.DecodeError as err:
        try:
            at = msgspec.json.decode(data, type=_When).at or NEVER
        except (msgspec.DecodeError, RecursionError):
            at = NEVER
        return Unreadable(run_id=run_id, at=at, stored_type=stored_type, error=str(err))


def stored_event(subject: str, data: bytes) -> RunEvent:
    """`decode_stored` of a message on `pb.run.<id>.<Type>` (or its feed's subject)."""
    parts = subject.split(".")
    return decode_stored(data, parts[-2] if len(parts) >= 4 else "", parts[-1])


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def command_body(command: msgspec.Struct) -> bytes:
    """A command as a request body: the subject names its type, so the body carries none."""
    body = msgspec.json.decode(encode(command))
    body.pop("type", None)
    return msgspec.json.encode(body)


def decode_command(name: str, data: bytes, kinds: Any = AnyCommand) -> Any:
    """Decode a command body into one of `kinds`; the subject names the type, so the body needs no tag."""
    body = decode_json(data) if data else {}
    if not isinstance(body, dict):
        raise msgspec.ValidationError("the command body must be a JSON object")
    body["type"] = name
    return msgspec.convert(body, kinds)


def to_builtins(message: msgspec.Struct) -> dict[str, Any]:
    builtins: dict[str, Any] = msgspec.to_builtins(message)
    return builtins


def event_name(event: RunEvent) -> str:
    return type(event).__name__
