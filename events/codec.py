"""The one codec: msgspec JSON for events and commands, nesting bounded (events/json_limits.py)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

import msgspec

from events.commands import AnyCommand, Reply
from events.json_limits import decode_json, stored_decoder
from events.run import AnyRunEvent, RunEvent, Unreadable
from events.subjects import PREFIX

_encoder = msgspec.json.Encoder()
decode_event: Callable[[bytes], RunEvent] = stored_decoder(AnyRunEvent)
decode_reply: Callable[[bytes], Reply] = stored_decoder(Reply)      # an answer of the engine

DecodeError = msgspec.DecodeError
S = TypeVar("S", bound=msgspec.Struct)
NEVER = datetime.min.replace(tzinfo=timezone.utc)    # when an unreadable event does not say when it happened


class _When(msgspec.Struct):
    at: datetime | None = None


def decode_stored(data: bytes, run_id: str, stored_type: str, why: str = "") -> RunEvent:
    """A run's stored event, or `Unreadable` saying why this version cannot read it: a reader that
    folds or shows a run never skips one unseen (an event of a newer engine, a field of another shape, a body
    that is not what its subject says, `why` the reader found already)."""
    error = why
    try:
        event = decode_event(data)
        if not why and (error := not_as_stored(event, stored_type, run_id) or "") == "":
            return event
    except msgspec.DecodeError as err:
        error = why or str(err)
    try:
        at = msgspec.json.decode(data, type=_When).at or NEVER
    except (msgspec.DecodeError, RecursionError):
        at = NEVER
    return Unreadable(run_id=run_id, at=at, stored_type=stored_type, error=error)


def not_as_stored(event: msgspec.Struct, stored_type: str, run_id: str | None = None) -> str | None:
    """Why a stored body is not the event its subject names (`pb.run.<id>.<Type>`), else None. NATS permits a
    publish by subject alone (an executor's login may write `StepSucceeded`, never `ApprovalGranted`): a body that
    says it is another kind, or of another run, is none of that login's events, and no reader takes it for one."""
    name = type(event).__name__
    if name != stored_type:
        return f"it is stored as a {stored_type} but says it is {_a(name)}"
    said = getattr(event, "run_id", None)
    if run_id and said is not None and said != run_id:
        return f"it is stored on run {run_id} but says it is of run {said}"
    return None


class NotAsStored(msgspec.DecodeError):
    """A stored body that is not the event its subject names, or that no engine timer stored (`held_to`): no one's
    work, and nothing waits for it (the fold sets it aside)."""


def not_scheduled_by_engine(headers: Mapping[str, str] | None) -> str:
    """Why a message was stored by a schedule no one but the engine arms, else "". NATS takes a message schedule
    on any subject its publisher may use and, when due, stores the body on the subject the schedule names, which
    it does not hold to the publisher's permissions: only the engine's timers (`pb.timer.>`, which no other login
    may publish) store events so. (An append that ends a timer names that timer the same way.)"""
    scheduler = (headers or {}).get("Nats-Scheduler", "")
    if scheduler and not scheduler.startswith(f"{PREFIX}.timer."):
        return f"a message schedule on {scheduler} stored it: only the engine's timers (pb.timer.>) store events"
    return ""


def held_to(subject: str, event: S, headers: Mapping[str, str] | None = None) -> S:
    """The event decoded from a message on `subject` (`<aggregate>.<Type>`: a run's, a circuit's, a token's), if
    its body is what the subject names and no one else's schedule stored it there (`headers`); else a DecodeError
    saying why, as for a body no one can read."""
    parts = subject.split(".")
    of_run = subject.startswith((f"{PREFIX}.run.", f"{PREFIX}.feed.run."))
    wrong = not_scheduled_by_engine(headers) or not_as_stored(event, parts[-1], parts[-2] if of_run else None)
    if wrong:
        raise NotAsStored(wrong)
    return event


def checked_event(subject: str, data: bytes, headers: Mapping[str, str] | None = None) -> RunEvent:
    """`decode_event` of a message on `pb.run.<id>.<Type>`, held to its subject and headers (`held_to`)."""
    return held_to(subject, decode_event(data), headers)


def _a(name: str) -> str:
    return f"{'an' if name[:1] in 'AEIOU' else 'a'} {name}"


def stored_event(subject: str, data: bytes, why: str = "") -> RunEvent:
    """`decode_stored` of a message on `pb.run.<id>.<Type>` (or its feed's subject)."""
    parts = subject.split(".")
    return decode_stored(data, parts[-2] if len(parts) >= 4 else "", parts[-1], why)


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
