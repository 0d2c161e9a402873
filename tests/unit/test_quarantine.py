"""Events that do not fit a run's state are set aside with a reason; the run, its views and its services go on."""
from __future__ import annotations

import msgspec
import pytest

from events.run import (
    ApprovalGranted, RollbackCompleted, RunCompleted, RunPaused, StepFailed, StepRolledBack, StepScheduled, StepStarted,
    StepSucceeded, Unreadable,
)
from events.codec import checked_event, decode_stored, encode
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


def test_a_step_waiting_at_its_gate_is_not_scheduled_by_an_event_before_the_gate_is_granted() -> None:
    """An executor's login may write StepScheduled (it schedules again what its holder never started): one for a
    step whose gate no one granted would run that step without its approval, and is set aside."""
    s = Scenario(started(R, [noop("a"), noop("gated", depends_on=["a"], approval_gate={"required_approvers": ["bob"]}),
                             noop("later", depends_on=["gated"], approval_gate={"required_approvers": ["bob"]})]))
    s.start()
    s.run_step("a")
    assert s.run.steps["gated"].gate.status == "requested"
    s.given(StepScheduled(run_id=R, at=at(5), step_id="gated", attempt=1),
            StepScheduled(run_id=R, at=at(6), step_id="later", attempt=1))     # its gate not even requested yet
    assert [s.run.steps[step].status for step in ("gated", "later")] == ["pending", "pending"]
    assert [q.reason for q in s.run.quarantined] == [
        "step gated waits at its approval gate (requested): it is scheduled only once the gate is granted",
        "step later waits at its approval gate (not requested yet): it is scheduled only once the gate is granted"]


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


def test_a_body_that_is_not_what_its_subject_names_is_unreadable_not_that_event() -> None:
    """NATS permits a publish by subject alone (pb-executor may write StepSucceeded, not ApprovalGranted): a body
    that says it is another kind, or of another run, is set aside, never folded as what it says."""
    granted = encode(ApprovalGranted(run_id=R, at=at(3), step_id="a", approvers=["bob"], actor="bob"))
    aside = decode_stored(granted, R, "StepSucceeded")
    assert isinstance(aside, Unreadable) and aside.stored_type == "StepSucceeded" and aside.at == at(3)
    assert aside.error == "it is stored as a StepSucceeded but says it is an ApprovalGranted"
    elsewhere = decode_stored(granted, "other-run", "ApprovalGranted")
    assert isinstance(elsewhere, Unreadable)
    assert elsewhere.error == f"it is stored on run other-run but says it is of run {R}"
    assert isinstance(decode_stored(granted, R, "ApprovalGranted"), ApprovalGranted)
    with pytest.raises(msgspec.DecodeError, match="says it is an ApprovalGranted"):
        checked_event(f"pb.run.{R}.StepSucceeded", granted)
    assert isinstance(checked_event(f"pb.feed.run.{R}.ApprovalGranted", granted), ApprovalGranted)


def test_an_event_a_message_schedule_stored_is_one_only_when_the_schedule_was_an_engine_timer() -> None:
    """NATS stores a schedule's body, when due, on the subject the schedule names, whoever armed it: a login that
    may publish on any subject of the stream could so store any event. Only the engine's timers (pb.timer.>) may."""
    granted = encode(ApprovalGranted(run_id=R, at=at(3), step_id="a", approvers=["bob"], actor="bob"))
    subject = f"pb.run.{R}.ApprovalGranted"
    timer = {"Nats-Scheduler": f"pb.timer.{R}.approval.a", "Nats-Schedule-Next": "purge"}
    assert isinstance(checked_event(subject, granted, timer), ApprovalGranted)
    with pytest.raises(msgspec.DecodeError, match=f"a message schedule on pb.run.{R}.StepSucceeded stored it"):
        checked_event(subject, granted, {"Nats-Scheduler": f"pb.run.{R}.StepSucceeded"})


def test_a_retry_naming_a_step_the_playbook_does_not_have_is_quarantined_not_a_fold_failing_for_all() -> None:
    from events.run import RunFailed, RunRetried
    s = Scenario(started(R, [noop("a")]))
    s.start()
    s.given(RunFailed(run_id=R, at=at(1), reason="step a failed"))
    s.given(RunRetried(run_id=R, at=at(2), actor="olga", steps=["a", "ghost"]))     # it raised KeyError: 'ghost'
    assert [q.reason for q in s.run.quarantined] == ["the playbook has no step 'ghost'"]
    assert s.run.status == "failed"


def test_a_step_is_not_scheduled_by_an_event_before_its_needs_settle() -> None:
    """pb-executor may write StepScheduled: one for a step whose needs have not settled would run it out of order,
    and is set aside."""
    s = Scenario(started(R, [noop("a"), noop("b", depends_on=["a"]), noop("c", depends_on=[])]))
    s.start()
    s.given(StepScheduled(run_id=R, at=at(1), step_id="b", attempt=1))
    assert s.run.steps["b"].status == "pending"
    assert [q.reason for q in s.run.quarantined] == [
        "step b needs steps that have not settled: it is scheduled only once they have"]
    s.run_step("a")
    assert s.run.steps["b"].status == "scheduled"       # once a succeeded, the decider schedules it
