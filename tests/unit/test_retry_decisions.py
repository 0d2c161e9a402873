"""Retries in the decider and the policy, as scenarios."""
from __future__ import annotations

import pytest

from events.commands import PauseRun
from events.playbook import RetryPolicy
from events.run import StepScheduled
from services.domain.classify import Classification
from services.domain.retry import backoff, retry_verdict
from services.domain.run.commands import RecordRetryVerdict
from tests.helpers import R, Scenario, at, kinds, noop, started

RETRY = {"max_attempts": 3, "base_delay": 1, "jitter": "none"}


def failing_once() -> Scenario:
    s = Scenario(started(R, [noop("call", retry=RETRY), noop("after")]))
    s.start(), s.begin("call")
    return s


def test_a_failure_with_a_retry_policy_waits_for_the_decision_instead_of_failing_the_run() -> None:
    s = failing_once()
    assert kinds(s.fail("call", "503", "temporary")) == ["StepFailed:call"]
    assert s.run.steps["call"].retry.status == "deciding"


def test_a_retry_is_scheduled_then_the_timer_schedules_the_next_attempt() -> None:
    s = failing_once()
    s.fail("call", "503", "temporary")
    events = s.when(RecordRetryVerdict(step_id="call", attempt=1, retry=True, category="temporary", reason="r",
                                delay_seconds=2.0))
    assert kinds(events) == ["StepRetryScheduled:call"]
    assert (events[0].attempt, events[0].due) == (2, at(12))
    s.given(StepScheduled(run_id=R, at=at(12), step_id="call", attempt=2, reason="retry"))   # the timer fires
    assert kinds(s.begin("call")) == ["StepStarted:call"]
    assert kinds(s.succeed("call")) == ["StepSucceeded:call", "StepScheduled:after"]


def test_not_retried_lets_the_failure_policy_apply() -> None:
    s = failing_once()
    s.fail("call", "403", "authorization")
    events = s.when(RecordRetryVerdict(step_id="call", attempt=1, retry=False, category="authorization", reason="no"))
    assert kinds(events) == ["StepNotRetried:call", "RunFailed"]


def test_a_decision_made_twice_is_recorded_once() -> None:
    s = failing_once()
    s.fail("call")
    decision = RecordRetryVerdict(step_id="call", attempt=1, retry=True, category="network", reason="r",
                                  delay_seconds=1)
    assert kinds(s.when(decision)) == ["StepRetryScheduled:call"]
    assert s.when(decision) == []


def test_a_paused_run_still_gets_its_retry_and_a_cancelled_failure_never_retries() -> None:
    s = failing_once()
    s.when(PauseRun(run_id=R, actor="ops"))
    s.fail("call")
    assert kinds(s.when(RecordRetryVerdict(step_id="call", attempt=1, retry=True, category="network", reason="r",
                                    delay_seconds=1))) == ["StepRetryScheduled:call"]
    s2 = failing_once()
    s2.fail("call", "killed", "cancelled")
    assert s2.run.steps["call"].retry.status == ""


@pytest.mark.parametrize("jitter, draw, expected", [("none", 0.5, 4.0), ("full", 0.5, 2.0), ("equal", 0.5, 3.0)])
def test_backoff_with_jitter(jitter, draw, expected) -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=1, max_delay=60, jitter=jitter)
    assert backoff(policy, 3, draw) == expected


def test_backoff_is_capped_and_retry_after_is_respected_within_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=1, max_delay=5, jitter="none")
    assert backoff(policy, 8, 0.0) == 5
    assert backoff(policy, 1, 0.0, retry_after=3) == 3
    assert backoff(policy, 1, 0.0, retry_after=300) == 5


def test_a_step_retried_for_days_keeps_waiting_its_longest_delay_past_the_thousandth_attempt() -> None:
    # every minute for a week: 2 ** 1024 no longer fits a float, and the verdict used to fail there, forever
    week = RetryPolicy(max_attempts=10_080, base_delay=1.0, max_delay=60.0, jitter="none")
    assert [backoff(week, attempt, 0.5) for attempt in (7, 1025, 10_079)] == [60.0, 60.0, 60.0]
    found = Classification(category="network", signal="connection refused")
    assert retry_verdict("call", 5_000, week, found, {}, 0.5).delay_seconds == 60.0


def test_the_policy_explains_itself() -> None:
    policy = RetryPolicy(max_attempts=3, retry_on_errors=["network"])
    found = Classification(category="temporary", signal="http status 503")
    verdict = retry_verdict("call", 1, policy, found, {"status_code": 503}, 0.5)
    assert not verdict.retry and "temporary is not in retry_on_errors (network)" in verdict.reason
    by_status = RetryPolicy(max_attempts=3, retry_on_status=[503])
    assert retry_verdict("call", 1, by_status, found, {"status_code": 503}, 0.5).retry
    assert retry_verdict("call", 3, by_status, found, {"status_code": 503}, 0.5).exhausted
