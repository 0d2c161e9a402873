"""Events that do not fit a run's state are set aside with a reason; the run, its views and its services go on."""
from __future__ import annotations

from events.run import (
    RollbackCompleted, RunCompleted, RunPaused, StepFailed, StepRolledBack, StepStarted, StepSucceeded,
)
from events.codec import decode_stored
from projections.run_view import run_view, timeline
from ui.cli.render import status_table
from tests.helpers import R, Scenario, at, kinds, noop, started


def test_a_start_naming_a_step_the_playbook_does_not_have_is_quarantined_and_the_run_goes_on() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start()
    s.given(StepStarted(run_id=R, at=at(1), step_id="ghost", attempt=1, executor="ex9"))
    [aside] = s.run.quarantined
    assert (aside.seq, aside.event, aside.step_id) == (3, "StepStarted", "ghost")
    assert aside.reason == "the playbook has no step 'ghost'"
    s.run_step("a")
    assert kinds(s.run_step("b")) == ["StepSucceeded:b", "RunCompleted"]


def test_a_step_cannot_succeed_before_it_started_nor_start_twice() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start()
    s.given(StepSucceeded(run_id=R, at=at(1), step_id="a", attempt=1))
    assert s.run.steps["a"].status == "scheduled"
    s.begin("a")
    s.given(StepStarted(run_id=R, at=at(2), step_id="a", attempt=1, executor="intruder"))
    assert s.run.steps["a"].attempt.executor == "ex1"
    assert [q.reason for q in s.run.quarantined] == [
        "step a is scheduled (attempt 1), not running as attempt 1",
        "step a is running (attempt 1), not scheduled as attempt 1",
    ]


def test_a_failure_of_an_attempt_that_is_not_the_current_one_is_quarantined() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start(), s.begin("a")
    s.given(StepFailed(run_id=R, at=at(1), step_id="a", attempt=7, error="late", category="network"))
    assert s.run.steps["a"].status == "running"
    assert s.run.quarantined[0].reason == "step a is running (attempt 1), not running as attempt 7"


def test_a_run_ends_once_and_only_a_started_rollback_ends() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start()
    s.run_step("a")
    assert s.run.status == "completed"
    s.given(RunCompleted(run_id=R, at=at(20)), RollbackCompleted(run_id=R, at=at(21)),
            StepRolledBack(run_id=R, at=at(22), step_id="a", attempt=1))
    assert s.run.status == "completed"
    assert [q.reason for q in s.run.quarantined] == [
        "the run is completed already", "the run is completed already", "step a's rollback is not running as attempt 1"]


def test_events_of_a_run_that_never_started_are_quarantined_not_applied() -> None:
    s = Scenario(RunPaused(run_id=R, at=at(0), actor="mallory"))
    assert not s.run.exists and s.run.status == "new"
    assert s.run.quarantined[0].reason == "no RunStarted before it"
    s.given(started(R, [noop("a")]), started(R, [noop("b")]))
    assert list(s.run.steps) == ["a"]
    assert s.run.quarantined[-1].reason == "the run had started already"


def test_the_views_show_what_was_quarantined_and_why() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start()
    ghost = StepStarted(run_id=R, at=at(1), step_id="ghost", attempt=1, executor="ex9")
    s.given(ghost)
    view = run_view(s.run)
    assert view["quarantined"] == [{"seq": 3, "event": "StepStarted", "step_id": "ghost",
                                    "reason": "the playbook has no step 'ghost'"}]
    [entry] = timeline([(3, ghost)], s.run.quarantined)
    assert entry["detail"] == "quarantined, not applied: the playbook has no step 'ghost'"
    assert "quarantined event 3 (StepStarted), not applied: the playbook has no step 'ghost'" in status_table(s.run)


def test_an_event_this_version_cannot_read_is_quarantined_with_why_never_skipped_unseen() -> None:
    """A newer engine's event type, a field of another shape, or no JSON at all: read as `Unreadable`
    (which the stream never holds), the fold sets it aside with the decoder's reason and the run goes on."""
    newer = decode_stored(b'{"type": "StepFrobnicated", "run_id": "r", "at": "2026-12-01T23:30:00Z"}', R,
                          "StepFrobnicated")
    reshaped = decode_stored(b'{"type": "StepSucceeded", "run_id": "r", "at": "2026-12-01T23:30:00Z", '
                             b'"step_id": "a", "attempt": "one"}', R, "StepSucceeded")
    garbage = decode_stored(b"\xff not json", R, "StepScheduled")
    assert [(e.stored_type, e.at.year) for e in (newer, reshaped, garbage)] == [
        ("StepFrobnicated", 2026), ("StepSucceeded", 2026), ("StepScheduled", 1)]
    s = Scenario(started(R, [noop("a")]))
    s.start()
    for event in (newer, reshaped, garbage):
        s.given(event)
    assert [(q.event, q.reason) for q in s.run.quarantined] == [
        ("StepFrobnicated", "this version of the engine cannot read it: Invalid value 'StepFrobnicated' - at `$.type`"),
        ("StepSucceeded", "this version of the engine cannot read it: Expected `int`, got `str` - at `$.attempt`"),
        ("StepScheduled", "this version of the engine cannot read it: JSON is malformed: invalid character (byte 0)"),
    ]
    assert kinds(s.run_step("a")) == ["StepSucceeded:a", "RunCompleted"]


def test_a_retry_naming_a_step_the_playbook_does_not_have_is_quarantined_not_a_fold_failing_for_all() -> None:
    from events.run import RunFailed, RunRetried
    s = Scenario(started(R, [noop("a")]))
    s.start()
    s.given(RunFailed(run_id=R, at=at(1), reason="step a failed"))
    s.given(RunRetried(run_id=R, at=at(2), actor="olga", steps=["a", "ghost"]))     # it raised KeyError: 'ghost'
    assert [q.reason for q in s.run.quarantined] == ["the playbook has no step 'ghost'"]
    assert s.run.status == "failed"
