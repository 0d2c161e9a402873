"""docs/events.md says what the code does: every event named, the endings table as ENDINGS spells it,
the subjects as events/subjects.py makes them, and PB_LOGS's limits as services/logs.py sets them."""
from __future__ import annotations

import re
from pathlib import Path

from events import subjects
from events.circuit import CIRCUIT_EVENT_TYPES
from events.output import OUTPUT_TYPES
from events.run import ENDINGS, REOPENING_EVENTS, RUN_EVENT_TYPES
from services.executor.live_output import MAX_LIVE_BYTES
from services.logs import MAX_AGE_SECONDS, MAX_BYTES, MAX_LINES_PER_ATTEMPT

DOC = (Path(__file__).parents[2] / "docs" / "events.md").read_text()


def test_every_event_and_output_type_is_named() -> None:
    named = set(re.findall(r"`([A-Z][A-Za-z]+)`", DOC))
    missing = {t.__name__ for t in (*RUN_EVENT_TYPES, *CIRCUIT_EVENT_TYPES, *OUTPUT_TYPES)} - named
    assert not missing, f"docs/events.md does not name {sorted(missing)}"


def test_the_endings_table_is_endings_and_the_reopening_event_is_named() -> None:
    table = dict(re.findall(r"^\| `([A-Za-z]+)` \| `([a-z_]+)` \|$", DOC, flags=re.MULTILINE))
    assert table == {event.__name__: status for event, status in ENDINGS.items()}
    assert all(f"`{event.__name__}` (a rollback asked for by hand)" in DOC for event in REOPENING_EVENTS)


def test_the_subjects_are_spelled_as_the_code_makes_them() -> None:
    spelled = [subjects.run_event("<run_id>", "<EventType>"), subjects.run_feed("<run_id>")[:-1] + "<EventType>",
               subjects.live_output("<run_id>", "<step_id>", "<attempt>"),  # type: ignore[arg-type]
               subjects.retry_timer("<run_id>", "<step_id>"), subjects.approval_timer("<run_id>", "<step_id>"),
               subjects.command("<Command>")]
    assert [s for s in spelled if f"`{s}`" not in DOC] == []
    assert f"| `{subjects.LOGS_STREAM}` |" in DOC and f"| `{subjects.RUNS_STREAM}` |" in DOC


def test_the_logs_limits_are_the_streams() -> None:
    limits = (MAX_AGE_SECONDS, MAX_BYTES, MAX_LIVE_BYTES, MAX_LINES_PER_ATTEMPT)
    assert limits == (7 * 24 * 3600, 1 << 30, 1 << 20, 10_000)
    assert "7 days" in DOC and "1 GiB in all" in DOC and "10,000 lines and 1 MiB" in DOC
