"""A message a service gave up on never leaves its run waiting for ever (services/domain/run/abandoned.py): a step
whose start or retry decision was given up on fails as an engine error, and the run's failure policy applies;
anything else is cancelled as a person cancels, and ends failed with why. Each reaction takes effect once."""
from __future__ import annotations

from unittest import mock

import msgspec

from events.run import MessageAbandoned, RunEvent
from services.domain.run import abandoned, decider
from services.domain.run.abandoned import react
from tests.helpers import R, Scenario, _checked_evolve, at, kinds, noop, started

RETRY = {"max_attempts": 3, "base_delay": 1, "jitter": "none"}
UNDO = {"rollback": [{"action": "noop"}]}


def given_up(s: Scenario, consumer: str, kind: str, seq: int, step_id: str | None = None,
             attempt: int | None = None) -> MessageAbandoned:
    return MessageAbandoned(run_id=R, at=at(5), consumer=consumer, seq=seq, subject=f"pb.run.{R}.{kind}",
                            deliveries=10, error="KeyError: 'x'", step_id=step_id, attempt=attempt)


def net(s: Scenario, record: MessageAbandoned) -> list[RunEvent]:
    """The net's decision on the record, stored as the store would; the invariants checked after every event."""
    s.given(record)
    before = msgspec.json.encode(s.run)
    with mock.patch.object(decider, "evolve", _checked_evolve), mock.patch.object(abandoned, "evolve", _checked_evolve):
        events = react(s.run, record, at(10))
    assert msgspec.json.encode(s.run) == before, "deciding changed the run it decided on"
    s.given(*events)
    return events


def scheduled(*steps: dict) -> tuple[Scenario, MessageAbandoned]:
    s = Scenario(started(R, list(steps) or [noop("a", retry=RETRY), noop("b")]))
    s.start()
    step = s.run.steps["a"]
    return s, given_up(s, "executor", "StepScheduled", step.attempt.scheduled_seq, "a", step.attempt.number)


def test_a_start_given_up_fails_the_step_as_an_engine_error_not_retried_and_the_run_fails_once() -> None:
    s, record = scheduled()
    assert kinds(net(s, record)) == ["StepFailed:a", "RunFailed"]
    step = s.run.steps["a"]
    assert (step.status, step.attempt.category, step.retry.status) == ("failed", "engine", "")
    assert "executor failed on it 10 times: KeyError: 'x'" in s.run.failure
    assert net(s, record) == []            # redelivered, or a second replica: nothing more


def test_the_failure_policy_applies_a_tolerated_step_lets_the_run_go_on() -> None:
    s, record = scheduled(noop("a", continue_on_failure=True), noop("b"))
    assert kinds(net(s, record)) == ["StepFailed:a", "StepScheduled:b"]


def test_a_rollback_policy_rolls_back_what_ran() -> None:
    s = Scenario(started(R, [noop("a", **UNDO), noop("b")], on_failure="rollback"))
    s.start(), s.run_step("a")
    step = s.run.steps["b"]
    record = given_up(s, "executor", "StepScheduled", step.attempt.scheduled_seq, "b", 1)
    assert kinds(net(s, record)) == ["StepFailed:b", "RollbackStarted", "StepRollbackScheduled:a"]


def test_a_start_stored_after_a_crash_half_way_is_advanced_on_redelivery() -> None:
    s, record = scheduled()
    failed = react(s.run, record, at(10))[:1]
    s.given(record, *failed)                # the StepFailed stored, then the net's process died
    assert kinds(net(s, record)) == ["RunFailed"]


def test_a_start_that_moved_on_is_left_alone() -> None:
    s, record = scheduled()
    s.begin("a")
    assert net(s, record) == []


def test_a_rollback_start_given_up_fails_that_rollback_action_and_the_rollback_ends_failed() -> None:
    s = Scenario(started(R, [noop("a", **UNDO), noop("b", **UNDO)], on_failure="rollback"))
    s.start(), s.run_step("a"), s.begin("b"), s.fail("b")
    [undoing] = [step for step in s.run.steps.values() if step.rollback.status == "scheduled"]
    rollback = undoing.rollback
    record = given_up(s, "executor", "StepRollbackScheduled", rollback.scheduled_seq, undoing.id, rollback.attempt)
    assert kinds(net(s, record)) == ["StepRollbackFailed:b", "StepRollbackScheduled:a"]   # the rollback goes on
    s.begin_rollback("a")
    assert kinds(s.finish_rollback("a")) == ["StepRolledBack:a", "RollbackFailed"]
    assert s.run.status == "rollback_failed"


def test_a_retry_decision_given_up_lets_the_failure_stand() -> None:
    s = Scenario(started(R, [noop("a", retry=RETRY), noop("b")]))
    s.start(), s.begin("a"), s.fail("a", "503", "temporary")
    record = given_up(s, "resilience", "StepFailed", s.seq, "a", 1)
    assert kinds(net(s, record)) == ["StepNotRetried:a", "RunFailed"]
    assert s.run.steps["a"].reason.startswith("the engine gave up on StepFailed")


def test_a_run_level_decision_given_up_ends_the_run_failed_at_once_when_nothing_runs() -> None:
    s = Scenario(started(R, [noop("a", approval_gate={"message": "go?"})]))
    s.start()
    record = given_up(s, "approval", "ApprovalRequested", s.seq, "a")
    assert kinds(net(s, record)) == ["RunCancelRequested", "RunFailed"]
    assert s.run.status == "failed" and s.run.failure.startswith("the engine gave up on ApprovalRequested")
    assert s.run.steering.cancel_requested_by == "system"
    assert net(s, record) == []


def test_a_run_level_decision_given_up_while_a_step_runs_cancels_it_and_ends_failed_once_it_is_killed() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start(), s.begin("a")
    record = given_up(s, "advancer", "RunResumed", s.seq)
    assert kinds(net(s, record)) == ["RunCancelRequested"]
    assert net(s, record) == []           # redelivered while the kill is under way: nothing more
    events = s.fail("a", "cancelled while running", "cancelled")    # the executor killed it, as on a cancel
    assert kinds(events) == ["StepFailed:a", "RunFailed"]
    assert s.run.status == "failed" and "RunResumed" in s.run.failure


def test_a_cancel_whose_end_was_given_up_on_ends_as_asked() -> None:
    from events.commands import CancelRun
    s = Scenario(started(R, [noop("a")]))
    s.start(), s.begin("a")
    s.when(CancelRun(run_id=R, actor="olga"))
    s.given(*decider._finish(s.run, decider.FinishStep(step_id="a", attempt=1, outputs={}, duration_ms=1.0,
                                                       error="cancelled", category="cancelled"), at(6)))
    assert s.run.status == "cancelling"     # the advance after the kill was not stored
    record = given_up(s, "advancer", "RunCancelRequested", s.seq)
    assert kinds(net(s, record)) == ["RunCancelled"]


def test_a_run_that_ended_and_the_records_of_other_consumers_change_nothing() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start(), s.run_step("a")
    assert s.run.status == "completed"
    assert net(s, given_up(s, "advancer", "RunStarted", 1)) == []
    s = Scenario(started(R, [noop("a")]))
    s.start()
    assert net(s, given_up(s, "learning", "StepScheduled", 2, "a", 1)) == []
    assert net(s, given_up(s, "abandoned", "MessageAbandoned", 3)) == []


def test_when_the_decider_fails_for_the_run_too_the_net_still_ends_it() -> None:
    s, record = scheduled()

    def broken(run: object, at: object) -> list[RunEvent]:
        raise KeyError("x")
    with mock.patch.object(abandoned, "advance", broken):
        assert kinds(net(s, record)) == ["StepFailed:a", "RunCancelRequested", "RunFailed"]
    assert s.run.steps["a"].attempt.category == "engine" and s.run.failure.startswith("the engine gave up")


def test_a_record_of_a_message_from_before_a_retry_changes_nothing() -> None:
    from events.commands import CancelRun, RetryRun
    from services.domain.run.commands import Retry
    s = Scenario(started(R, [noop("a", approval_gate={"message": "go?"})]))
    s.start()
    gate_seq = s.seq
    s.when(CancelRun(run_id=R, actor="olga"))        # the operator saw it stuck, and the engine was fixed
    s.when(Retry(RetryRun(run_id=R, actor="olga")))
    assert s.run.status == "running"
    assert net(s, given_up(s, "approval", "ApprovalRequested", gate_seq, "a")) == []


def test_an_outcome_the_executor_could_not_record_fails_the_running_step_as_engine_once() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start(), s.begin("a")
    record = given_up(s, "executor", "StepStarted", s.seq, "a", 1)
    assert kinds(net(s, record)) == ["StepFailed:a", "RunFailed"]
    assert net(s, record) == []
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start(), s.run_step("a")
    assert net(s, given_up(s, "executor", "StepStarted", 3, "a", 1)) == []      # it was recorded after all
