"""What one run event teaches, given the run so far: pure, and the same after a restart mid-run."""
from __future__ import annotations

from datetime import timedelta

from events.circuit import CircuitCallFailed
from events.run import (
    ApprovalGranted, ApprovalRequested, RollbackCompleted, RollbackFailed, RollbackStarted, RunCancelled,
    RunCompleted, RunFailed, RunRetried, StepFailed, StepNotRetried,
    StepRemediated, StepRemediationStarted, StepRetryScheduled, StepSucceeded,
)
from services.learning.facts import (
    ApprovalDecided, AttemptFailed, AttemptPassed, RemediationEnded, RunBegan, RunEnded, RunReopened, StepConfigured,
)
from services.learning import interpret
from services.learning.interpret import Interpreter
from tests.helpers import at, started

FLAKY = {"id": "call", "action": "http_request", "args": {"url": "http://${host}/api"}, "timeout_seconds": 5,
         "retry": {"max_attempts": 3, "base_delay": 0.5}}


def retried_then_passed(run_id: str = "r1") -> list:
    return [
        started(run_id, [FLAKY], values={"host": "api.internal"},
                parameters=[{"name": "host", "type": "host", "allowed_hosts": ["api.internal"]}]),
        StepFailed(run_id=run_id, at=at(1), step_id="call", attempt=1, error="HTTP 503", category="temporary",
                   outputs={"status_code": 503}, duration_ms=12),
        StepRetryScheduled(run_id=run_id, at=at(1), step_id="call", attempt=2, delay_seconds=0.5, due=at(1.5),
                           category="temporary", reason="retry"),
        StepSucceeded(run_id=run_id, at=at(2), step_id="call", attempt=2, duration_ms=30),
        RunCompleted(run_id=run_id, at=at(3)),
    ]


def learn(events: list, interpreter: Interpreter | None = None) -> list:
    interpreter = interpreter or Interpreter()
    return [fact for event in events for fact in interpreter.facts(event)]


def test_a_retried_failure_teaches_its_category_and_what_the_retry_after_its_backoff_did() -> None:
    began, configured, failed, passed, ended = learn(retried_then_passed())
    assert isinstance(began, RunBegan) and began.steps == ["call"]
    assert isinstance(configured, StepConfigured) and configured.shape.target == "http://api.internal:80"
    assert configured.shape.retry.max_attempts == 3 and configured.shape.check is not None
    assert failed == AttemptFailed(at=at(1), playbook="test", step="call", attempt=1, category="temporary",
                                   duration_ms=12, target="http://api.internal:80", status=503, retried=True,
                                   definition=configured.shape.definition, starter="alice", text=True)
    assert passed == AttemptPassed(at=at(2), playbook="test", step="call", attempt=2, duration_ms=30,
                                   target="http://api.internal:80", after="temporary", delay_ms=500, waited_ms=500,
                                   definition=configured.shape.definition)
    assert len(configured.shape.definition) == 16
    assert ended == RunEnded(at=at(3), playbook="test", outcome="completed", duration_ms=3000)


def assert_a_restart_at_any_cut_teaches_the_same(events: list, first_cut: int) -> None:
    """Met after a restart at each cut from `first_cut` on, the run teaches what it would have taught."""
    for cut in range(first_cut, len(events)):
        followed = Interpreter()
        learn(events[:cut], followed)
        restarted = Interpreter()
        assert restarted.needs_history(events[cut])
        restarted.replay("r1", events[:cut])
        assert learn(events[cut:], restarted) == learn(events[cut:], followed)


def test_a_run_met_mid_way_teaches_what_it_would_have_taught_from_the_start() -> None:
    assert_a_restart_at_any_cut_teaches_the_same(retried_then_passed(), 1)


def test_an_unchanged_playbook_teaches_its_shape_once() -> None:
    interpreter = Interpreter()
    first, second = learn(retried_then_passed("r1"), interpreter), learn(retried_then_passed("r2"), interpreter)
    assert sum(isinstance(f, StepConfigured) for f in first) == 1
    assert not any(isinstance(f, StepConfigured) for f in second)


def test_a_failure_nobody_classified_stood_when_the_run_ended_unless_the_engine_stopped_it() -> None:
    steps = [{"id": "a", "action": "shell", "args": {"command": "false"}}]
    failing = [started("r1", steps), StepFailed(run_id="r1", at=at(1), step_id="a", attempt=1, error="exit 1"),
               RunFailed(run_id="r1", at=at(2), reason="a failed")]
    cancelled = [started("r2", steps), StepFailed(run_id="r2", at=at(1), step_id="a", attempt=1, error="killed",
                                                  category="cancelled"), RunCancelled(run_id="r2", at=at(2))]
    stood = [f for f in learn(failing) + learn(cancelled) if isinstance(f, AttemptFailed)]
    assert [(f.category, f.gave_up) for f in stood] == [("unknown", True), ("cancelled", False)]


def test_a_run_rolled_back_on_failure_ends_rolled_back_and_a_later_rollback_by_hand_teaches_nothing() -> None:
    steps = [{"id": "a", "action": "shell", "args": {"command": "false"}}]
    rolled = [started("r1", steps), StepFailed(run_id="r1", at=at(1), step_id="a", attempt=1, error="exit 1"),
              RollbackStarted(run_id="r1", at=at(1), waves=[["a"]], reason="a failed"),
              RollbackCompleted(run_id="r1", at=at(4))]
    ended = [f for f in learn(rolled) if isinstance(f, RunEnded)]
    assert ended == [RunEnded(at=at(4), playbook="test", outcome="rolled_back", duration_ms=4000)]
    interpreter = Interpreter()
    learn(retried_then_passed(), interpreter)
    again = [RollbackStarted(run_id="r1", at=at(5), waves=[], reason="by hand", actor="ops"),
             RollbackFailed(run_id="r1", at=at(6), reason="undo failed")]
    assert learn(again, interpreter) == []


def test_an_exhausted_retry_an_approval_wait_and_a_remediation() -> None:
    steps = [{"id": "gate", "action": "noop", "approval_gate": {"required_approvers": ["bob"]}},
             {"id": "call", "action": "shell", "args": {"command": "x"}}]
    handlers = [{"category": "authentication", "run": {"action": "noop"}}]
    events = [started("r1", steps, error_handlers=handlers),
              ApprovalRequested(run_id="r1", at=at(0), step_id="gate", message="", required_approvers=["bob"],
                                min_approvals=1),
              ApprovalGranted(run_id="r1", at=at(90), step_id="gate", approvers=["bob"], actor="bob"),
              StepFailed(run_id="r1", at=at(91), step_id="call", attempt=1, error="401", category="authentication"),
              StepRemediationStarted(run_id="r1", at=at(91), step_id="call", attempt=1, handler=0, reason="x"),
              StepRemediated(run_id="r1", at=at(92), step_id="call", attempt=1, handler=0),
              StepNotRetried(run_id="r1", at=at(92), step_id="call", attempt=1, category="authentication",
                             reason="remediated; the handler lets the failure stand", exhausted=True)]
    facts = learn(events)
    assert ApprovalDecided(at=at(90), playbook="test", step="gate", waited_ms=90_000, outcome="granted") in facts
    assert RemediationEnded(at=at(92), playbook="test", step="call", handler="authentication", succeeded=True) in facts
    failed, = (f for f in facts if isinstance(f, AttemptFailed))
    assert (failed.category, failed.gave_up, failed.exhausted) == ("authentication", True, True)


def test_a_target_only_run_time_knows_comes_from_the_breaker_and_dry_runs_teach_nothing() -> None:
    steps = [{"id": "find", "action": "noop", "args": {"message": "http://found.internal"},
              "outputs": [{"name": "url", "from": "message"}]},
             {"id": "call", "action": "http_request", "args": {"url": "${steps.find.url}"}}]
    key = "http://found.internal:80"
    facts = learn([started("r1", steps),
                   CircuitCallFailed(key=key, at=at(1), run_id="r1", step_id="call", error="refused"),
                   StepFailed(run_id="r1", at=at(1), step_id="call", attempt=1, error="refused", category="network"),
                   RunFailed(run_id="r1", at=at(2), reason="call failed")])
    shapes = {f.step: f.shape for f in facts if isinstance(f, StepConfigured)}
    assert shapes["call"].target is None and shapes["find"].check is None
    assert [f.target for f in facts if isinstance(f, AttemptFailed)] == [key]
    assert learn([started("r2", steps, dry_run=True), RunCompleted(run_id="r2", at=at(1) + timedelta(seconds=1))]) == []


def failed_then_retried_to_completion(run_id: str = "r1") -> list:
    steps = [{"id": "a", "action": "shell", "args": {"command": "make"}, "retry": {"max_attempts": 2}}]
    return [
        started(run_id, steps),
        StepFailed(run_id=run_id, at=at(1), step_id="a", attempt=1, error="exit 1", duration_ms=5),
        StepNotRetried(run_id=run_id, at=at(1), step_id="a", attempt=1, category="configuration", reason="no"),
        RunFailed(run_id=run_id, at=at(2), reason="a failed"),
        RunRetried(run_id=run_id, at=at(60), actor="olga", steps=["a"]),
        StepSucceeded(run_id=run_id, at=at(61), step_id="a", attempt=2, duration_ms=7),
        RunCompleted(run_id=run_id, at=at(62)),
    ]


def test_a_retry_reopens_the_ended_run_and_its_attempts_count_their_tries_afresh() -> None:
    facts = learn(failed_then_retried_to_completion())[2:]
    gave_up, failed_ending, reopened, passed, completed = facts
    assert isinstance(gave_up, AttemptFailed) and gave_up.gave_up
    assert isinstance(failed_ending, RunEnded) and failed_ending.outcome == "failed"
    assert reopened == RunReopened(at=at(60), playbook="test", outcome="failed", steps=["a"])
    assert isinstance(passed, AttemptPassed) and passed.attempt == 1 and passed.after == ""
    # 62 s from its start, less the 58 s it lay failed until olga retried it
    assert isinstance(completed, RunEnded) and completed.outcome == "completed" and completed.duration_ms == 4_000


def test_a_retry_met_after_a_restart_reopens_the_run_as_it_would_have() -> None:
    events = failed_then_retried_to_completion()
    retry = next(i for i, e in enumerate(events) if isinstance(e, RunRetried))
    assert_a_restart_at_any_cut_teaches_the_same(events, retry)


def test_ended_runs_kept_to_reopen_are_bounded_and_one_retried_after_its_context_went_is_replayed(monkeypatch) -> None:
    """Each ended run's context is kept for a retry; 10,000 of them held every step of each. Beyond the newest
    ENDED_KEPT, a retry is met like one after a restart: the run is replayed from the stream first."""
    monkeypatch.setattr(interpret, "ENDED_KEPT", 2)
    events = failed_then_retried_to_completion()
    retry = next(i for i, e in enumerate(events) if isinstance(e, RunRetried))
    followed = Interpreter()
    learn(events[:retry], followed)
    for other in ("r2", "r3"):
        learn(retried_then_passed(other), followed)
    assert list(followed.ended) == ["r2", "r3"] and "r1" in followed.finished
    assert followed.needs_history(events[retry])
    followed.replay("r1", events[:retry])
    reopened, _, completed = learn(events[retry:], followed)
    assert reopened == RunReopened(at=at(60), playbook="test", outcome="failed", steps=["a"])
    assert isinstance(completed, RunEnded) and completed.outcome == "completed"
    assert len(followed.ended) == 2
