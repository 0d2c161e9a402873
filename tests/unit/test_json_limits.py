"""How deeply JSON may nest: counted on structure alone, never on brackets inside strings."""
from __future__ import annotations

import msgspec
import pytest

from events.codec import decode_event
from events import json_limits
from events.json_limits import MAX_REQUEST_DEPTH, build_decoders, check_depth, decode_json, stored_decoder


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_json_exactly_as_deep_as_the_limit_passes_and_one_level_more_is_refused() -> None:
    assert decode_json(nested(MAX_REQUEST_DEPTH)) is not None
    with pytest.raises(msgspec.DecodeError, match=f"nested deeper than {MAX_REQUEST_DEPTH} levels"):
        decode_json(nested(MAX_REQUEST_DEPTH + 1))


def test_brackets_inside_strings_escaped_quotes_included_are_not_structure() -> None:
    text = b'{"yaml": "' + b"[{" * 10_000 + b'\\"]}' + b"[" * 100 + b'"}'
    check_depth(text, 2)
    assert decode_json(text)["yaml"].startswith("[{[{")


def test_a_hundred_thousand_levels_are_refused_without_a_recursion_error() -> None:
    with pytest.raises(msgspec.DecodeError, match="nested deeper"):
        decode_json(b'{"a": ' + nested(100_000) + b"}")


def test_an_event_nested_past_what_the_decoder_can_follow_is_undecodable_not_a_crash() -> None:
    with pytest.raises(msgspec.DecodeError, match="nested deeper"):
        decode_event(b'{"type": "StepSucceeded", "run_id": "r", "at": "2026-01-01T00:00:00Z", "step_id": "a", '
                     b'"attempt": 1, "duration_ms": 1, "outputs": {"deep": ' + nested(100_000) + b"}}")


def test_a_stored_decoder_is_built_on_first_use_or_by_build_decoders_and_decodes_the_same(monkeypatch) -> None:
    class Thing(msgspec.Struct):
        name: str

    monkeypatch.setattr(json_limits, "_UNBUILT", [])
    first, second = stored_decoder(Thing), stored_decoder(Thing)
    assert len(json_limits._UNBUILT) == 2
    assert first(b'{"name": "a"}') == Thing("a")          # built on first use
    build_decoders()                                       # what an engine process does as it starts
    assert json_limits._UNBUILT == []
    assert second(b'{"name": "b"}') == Thing("b")
