"""Outcomes too big for one event are cut to fit, longest texts first, with a note; never dropped."""
from __future__ import annotations

import msgspec

from services.domain.capping import EVENT_ROOM, capped

LIMIT = 64 * 1024


def size(value) -> int:
    return len(msgspec.json.encode(value))


def test_an_outcome_that_fits_is_kept_as_it_is() -> None:
    outputs = {"stdout": "hello", "returncode": 0}
    assert capped(outputs, "", LIMIT) == (outputs, "", "")


def test_a_body_of_two_megabytes_keeps_its_head_and_says_how_much_was_cut() -> None:
    body = "x" * 2_000_000
    outputs, error, note = capped({"status_code": 200, "body": body, "headers": {"a": "b"}}, "", LIMIT)
    assert size(outputs) + size(error) <= LIMIT - EVENT_ROOM
    assert outputs["status_code"] == 200 and outputs["headers"] == {"a": "b"}
    head, _, mark = outputs["body"].partition("\n[... ")
    assert body.startswith(head) and len(head) > 10_000
    cut = int(mark.split()[0])
    assert cut == len(body) - len(head)
    assert note.startswith("outputs cut by ") and note.endswith(f"to fit the event store ({LIMIT - EVENT_ROOM} bytes)")


def test_texts_are_cut_on_a_character_boundary() -> None:
    outputs, _, _ = capped({"stdout": "é" * 100_000}, "", LIMIT)
    head = outputs["stdout"].partition("\n[... ")[0]
    assert set(head) == {"é"}


def test_a_rollback_keeps_its_list_of_outputs_even_when_nothing_of_it_fits() -> None:
    many = [{f"k{i}": i for i in range(20_000)}]
    outputs, _, note = capped(many, "", LIMIT)
    assert isinstance(outputs, list) and "did not fit the event store" in outputs[0]["capped"]
    assert note.startswith(f"outputs cut by {size(many)} bytes")


def test_an_error_text_is_cut_too() -> None:
    _, error, note = capped({}, "boom " * 10_000, LIMIT)
    assert len(error.encode()) < 8300 and error.startswith("boom boom")
    assert note.startswith("error cut by ")
