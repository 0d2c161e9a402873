"""Step logs folded from the events that carry an attempt's output."""
from __future__ import annotations

import msgspec
import pytest

from events.run import (
    RunCompleted, StepFailed, StepRemediated, StepRemediationFailed, StepRemediationStarted, StepRollbackFailed,
    StepRolledBack, StepStarted, StepSucceeded,
)
from projections.step_logs import LogEntry, log_entries, logs_of
from tests.helpers import at

R = "run1"


def lines(entries: list[LogEntry]) -> list[tuple[str, str, int, str, str]]:
    return [(e.step_id, e.phase, e.attempt, e.stream, e.text) for e in entries]


def test_a_succeeded_shell_step_logs_its_stdout_then_stderr() -> None:
    event = StepSucceeded(run_id=R, at=at(3), step_id="build", attempt=1, duration_ms=12.0,
                          outputs={"returncode": 0, "stdout": "compiled 3 files\n", "stderr": "warning: old flag\n"})
    entries = log_entries(7, event)
    assert lines(entries) == [("build", "step", 1, "stdout", "compiled 3 files\n"),
                              ("build", "step", 1, "stderr", "warning: old flag\n")]
    assert (entries[0].seq, entries[0].at, entries[0].run_id) == (7, at(3), R)


def test_a_failed_step_logs_its_output_and_then_its_error() -> None:
    event = StepFailed(run_id=R, at=at(5), step_id="deploy", attempt=2, category="network",
                       error="command exited with code 7: connection refused",
                       outputs={"returncode": 7, "stdout": "", "stderr": "curl: (7) connection refused"})
    assert lines(log_entries(9, event)) == [
        ("deploy", "step", 2, "stderr", "curl: (7) connection refused"),
        ("deploy", "step", 2, "error", "command exited with code 7: connection refused")]


def test_rollback_outputs_give_one_entry_per_action_and_stream() -> None:
    rolled = StepRolledBack(run_id=R, at=at(8), step_id="deploy", attempt=1,
                            outputs=[{"stdout": "restored v1\n"}, {"stdout": "cache flushed\n", "stderr": "slow\n"}])
    failed = StepRollbackFailed(run_id=R, at=at(9), step_id="backup", attempt=2, error="undo failed: exit 1",
                                outputs=[{"stderr": "no snapshot\n"}])
    assert lines(log_entries(1, rolled)) == [("deploy", "rollback", 1, "stdout", "restored v1\n"),
                                             ("deploy", "rollback", 1, "stdout", "cache flushed\n"),
                                             ("deploy", "rollback", 1, "stderr", "slow\n")]
    assert lines(log_entries(2, failed)) == [("backup", "rollback", 2, "stderr", "no snapshot\n"),
                                             ("backup", "rollback", 2, "error", "undo failed: exit 1")]


def test_a_remediation_logs_its_output_or_its_error() -> None:
    done = StepRemediated(run_id=R, at=at(4), step_id="deploy", attempt=1, handler=0,
                          outputs={"stdout": "restarted the agent\n"})
    failed = StepRemediationFailed(run_id=R, at=at(4), step_id="deploy", attempt=1, handler=1,
                                   error="restart: timed out")
    assert lines(log_entries(1, done)) == [("deploy", "remediation", 1, "stdout", "restarted the agent\n")]
    assert lines(log_entries(2, failed)) == [("deploy", "remediation", 1, "error", "restart: timed out")]


def test_events_without_output_carry_no_log() -> None:
    assert log_entries(1, StepStarted(run_id=R, at=at(), step_id="a", attempt=1, executor="ex1")) == []
    assert log_entries(2, RunCompleted(run_id=R, at=at())) == []
    assert log_entries(3, StepRemediationStarted(run_id=R, at=at(), step_id="a", attempt=1, handler=0,
                                                 reason="network")) == []
    assert log_entries(4, StepSucceeded(run_id=R, at=at(), step_id="a", attempt=1)) == []


@pytest.mark.parametrize("outputs, expected", [
    (None, []),
    (42, []),
    ("just a string", []),
    ([{"stdout": "in a list"}], []),
    ({"stdout": None, "stderr": ""}, []),
    ({"stdout": {"nested": ["x"]}, "stderr": ["a", "b"]}, []),
    ({"stdout": 3, "stderr": True}, [("stdout", "3")]),
    ({"stdout": b"caf\xc3\xa9 \xff"}, [("stdout", "café \ufffd")]),
    ({"json": {"stdout": "not this"}, "status": 200}, []),
])
def test_odd_step_outputs_never_raise(outputs, expected) -> None:
    event = StepSucceeded(run_id=R, at=at(), step_id="a", attempt=1, outputs=outputs)
    assert [(e.stream, e.text) for e in log_entries(1, event)] == expected


@pytest.mark.parametrize("outputs", [None, 7, {"stdout": "a lone dict\n"}, [None, 3, "x", {"stdout": 1.5}]])
def test_odd_rollback_outputs_never_raise(outputs) -> None:
    event = StepRollbackFailed(run_id=R, at=at(), step_id="a", attempt=1, error=None, outputs=outputs)
    texts = [e.text for e in log_entries(1, event)]
    assert texts in ([], ["a lone dict\n"], ["1.5"])


def test_entries_encode_as_json_for_the_api() -> None:
    event = StepFailed(run_id=R, at=at(1), step_id="a", attempt=1, error="boom", outputs={"stdout": "hi"})
    encoded = msgspec.json.decode(msgspec.json.encode(log_entries(5, event)))
    assert encoded == [
        {"seq": 5, "at": "2026-01-01T12:00:01Z", "run_id": R, "step_id": "a", "attempt": 1, "phase": "step",
         "stream": "stdout", "text": "hi"},
        {"seq": 5, "at": "2026-01-01T12:00:01Z", "run_id": R, "step_id": "a", "attempt": 1, "phase": "step",
         "stream": "error", "text": "boom"}]


def test_logs_of_a_run_keep_event_order_and_filter_by_step_and_attempt() -> None:
    envelopes = [
        (10, StepStarted(run_id=R, at=at(1), step_id="fetch", attempt=1, executor="ex1")),
        (11, StepFailed(run_id=R, at=at(2), step_id="fetch", attempt=1, error="timeout", category="timeout",
                        outputs={"stderr": "waiting...\n"})),
        (12, StepSucceeded(run_id=R, at=at(3), step_id="other", attempt=1, outputs={"stdout": "ok\n"})),
        (15, StepSucceeded(run_id=R, at=at(6), step_id="fetch", attempt=2, outputs={"stdout": "got it\n"})),
    ]
    assert [(e.seq, e.step_id, e.attempt, e.stream) for e in logs_of(envelopes)] == [
        (11, "fetch", 1, "stderr"), (11, "fetch", 1, "error"), (12, "other", 1, "stdout"), (15, "fetch", 2, "stdout")]
    assert [e.seq for e in logs_of(envelopes, step_id="fetch")] == [11, 11, 15]
    assert [e.text for e in logs_of(envelopes, step_id="fetch", attempt=2)] == ["got it\n"]
    assert [e.step_id for e in logs_of(envelopes, attempt=1)] == ["fetch", "fetch", "other"]
    assert logs_of([], step_id="fetch") == []
