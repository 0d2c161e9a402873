"""What a run pins: its parsed playbook (the playbook and its plan), stored by digest.

Apart from the store's client (`services.playbook_store`): the CLI resolves a pinned run
over its plain connection with the same names and checks.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

import msgspec

from events.json_limits import stored_decoder
from events.playbook import Plan, Playbook
from events.run import RunRetried, RunStarted
from services.errors import UnknownPlaybook


class ParsedPlaybook(msgspec.Struct, frozen=True, kw_only=True):
    """What a run follows, as stored: the playbook and its plan, exactly as validation produced them."""

    playbook: Playbook
    plan: Plan


Pinned = TypeVar("Pinned", bound=RunStarted | RunRetried)     # the events that pin a playbook by digest
_parsed_decoder: Callable[[bytes], ParsedPlaybook] = stored_decoder(ParsedPlaybook)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def encode_parsed(playbook: Playbook, plan: Plan) -> bytes:
    return msgspec.json.encode(ParsedPlaybook(playbook=playbook, plan=plan))


def object_name(digest: str, kind: str) -> str:
    """`sha256:<hex>` -> `sha256-<hex>.<kind>`: object names are readable and need no escaping."""
    return digest.replace(":", "-") + "." + kind


def decode_parsed(digest: str, data: bytes | None, bucket: str) -> ParsedPlaybook:
    """The parsed playbook stored as `digest` (None: nothing was); UnknownPlaybook if absent, not what it says, or
    not readable as a playbook any more."""
    if data is None:
        raise UnknownPlaybook(f"no parsed playbook {digest} in {bucket}")
    if digest_of(data) != digest:
        raise UnknownPlaybook(f"the parsed playbook stored as {digest} does not match its digest")
    try:
        return _parsed_decoder(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:   # e.g. an infinity JSON kept as null
        raise UnknownPlaybook(f"the parsed playbook stored as {digest} cannot be read: {err}") from err


def with_playbook(event: Pinned, parsed: ParsedPlaybook) -> Pinned:
    """A pinned RunStarted (or a retry's pinned replacement) ready to fold."""
    return msgspec.structs.replace(event, playbook=parsed.playbook, plan=parsed.plan)
