"""How deeply JSON may nest: a request at most MAX_REQUEST_DEPTH levels, a stored event MAX_EVENT_DEPTH.

Deeper JSON is refused with a DecodeError that says so, never a RecursionError far from
the door that received it. Events are checked when written (services/store.py), so
whatever the engine stored it can read back.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

MAX_REQUEST_DEPTH = 64     # a request's JSON: parameters and bodies need a handful
MAX_EVENT_DEPTH = 256      # a stored event: a playbook's own nesting, and room around it

# A JSON string (skipped whole, escapes included), or one bracket.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]')
_OPEN = frozenset(b"[{")


def check_depth(data: bytes, limit: int) -> None:
    """DecodeError if the JSON in `data` nests deeper than `limit` arrays and objects."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return          # too few brackets to nest that deep: the usual case, at C speed
    depth = 0
    for token in _TOKENS.finditer(data):
        first = token.group()[0]
        if first in _OPEN:
            depth += 1
            if depth > limit:
                raise msgspec.DecodeError(f"JSON nested deeper than {limit} levels")
        elif first != 0x22:   # a closing bracket (strings are skipped whole)
            depth -= 1


def decode_json(data: bytes, kind: Any = Any, limit: int = MAX_REQUEST_DEPTH) -> Any:
    """`data` as `kind`, refused if it nests deeper than `limit`: every door decodes requests so."""
    check_depth(data, limit)
    try:
        return msgspec.json.decode(data, type=kind)
    except RecursionError:   # cannot pass the check above; kept so that no decoder ever raises it
        raise msgspec.DecodeError(f"JSON nested deeper than the decoder can follow (limit {limit})") from None


def stored_decoder(kind: Any) -> Callable[[bytes], Any]:
    """A fast decoder for what the engine stored (not scanned: the store checked it when writing).

    Built on first use: a module declares its decoders, and a process that imports it (the CLI) may never
    decode what they read; building one for a union of events costs milliseconds. An engine process builds
    them all as it starts (`build_decoders`), not on its loop when the first run comes.
    """
    decoder: msgspec.json.Decoder[Any] | None = None

    def build() -> msgspec.json.Decoder[Any]:
        nonlocal decoder
        if decoder is None:     # two threads may both build one: the same decoder either way
            decoder = msgspec.json.Decoder(kind)
        return decoder

    def decode(data: bytes) -> Any:
        try:
            return (decoder or build()).decode(data)
        except RecursionError:   # not written by this engine
            raise msgspec.DecodeError(f"stored JSON nested deeper than {MAX_EVENT_DEPTH} levels") from None
    _UNBUILT.append(build)
    return decode


_UNBUILT: list[Callable[[], object]] = []


def build_decoders() -> None:
    """Build every stored decoder the modules imported so far declared."""
    while _UNBUILT:
        _UNBUILT.pop()()
