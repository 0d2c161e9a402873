"""The one codec: msgspec JSON for events and commands, nesting bounded (events/json_limits.py)."""
from __future__ import annotations

from collections.abc import Callable

from typing import Any

import msgspec

from events.commands import AnyCommand, Reply
from events.json_limits import decode_json, stored_decoder
from events.run import AnyRunEvent, RunEvent

_encoder = msgspec.json.Encoder()
decode_event: Callable[[bytes], RunEvent] = stored_decoder(AnyRunEvent)
decode_reply: Callable[[bytes], Reply] = stored_decoder(Reply)      # an answer of the engine

DecodeError = msgspec.DecodeError


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
