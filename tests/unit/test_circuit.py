"""The circuit breaker's rules, pure."""
from __future__ import annotations

from events.playbook import CircuitSpec, Step, circuit_of
from services.domain.breaker import Breaker, after_call, before_call, evolve
from projections.sentences import circuit_sentence
from tests.helpers import at

SPEC = CircuitSpec(failure_threshold=2, open_seconds=10, half_open_trials=1)


def apply(breaker: Breaker, events) -> Breaker:
    for event in events:
        evolve(breaker, event)
    return breaker


def names(events) -> list[str]:
    return [type(e).__name__ for e in events]


def test_target_failures_in_a_row_open_it_and_then_calls_fail_fast() -> None:
    b = Breaker(key="http://db:80")
    first = after_call(b, SPEC, "r", "s", at(0), "network", "refused")
    assert names(first) == ["CircuitCallFailed"]
    apply(b, first)
    events = after_call(b, SPEC, "r", "s", at(1), "network", "refused")
    assert names(events) == ["CircuitCallFailed", "CircuitOpened"]
    apply(b, events)
    assert b.state == "open" and b.until == at(11)
    assert before_call(b, SPEC, "r", "s", at(5))[1].startswith("circuit http://db:80 is open")


def test_failures_that_do_not_speak_of_the_target_do_not_count() -> None:
    b = Breaker(key="k")
    assert after_call(b, SPEC, "r", "s", at(0), "configuration", "bad arg") == []


def test_after_the_open_time_one_trial_goes_through_and_a_success_closes_it() -> None:
    b = apply(Breaker(key="k"), after_call(Breaker(key="k", failures=1), SPEC, "r", "s", at(0), "timeout", "slow"))
    events, denial = before_call(b, SPEC, "r", "s", at(11))
    assert (names(events), denial) == (["CircuitHalfOpened", "CircuitTrialStarted"], None)
    apply(b, events)
    assert before_call(b, SPEC, "r2", "s", at(11))[1] is not None      # the one trial is taken
    assert names(after_call(b, SPEC, "r", "s", at(12), None)) == ["CircuitCallSucceeded", "CircuitClosed"]


def test_a_failed_trial_opens_it_again() -> None:
    b = Breaker(key="k", state="half_open", trials=1)
    assert names(after_call(b, SPEC, "r", "s", at(0), "network", "refused")) == ["CircuitCallFailed", "CircuitOpened"]


def test_a_success_after_failures_resets_the_count() -> None:
    b = Breaker(key="k", failures=1)
    apply(b, after_call(b, SPEC, "r", "s", at(0), None))
    assert b.failures == 0


RATE = CircuitSpec(failure_threshold=100, failure_rate=0.5, window=4, minimum_calls=4, open_seconds=10)


def test_a_failure_rate_over_the_window_opens_it_when_enough_calls_were_made() -> None:
    b = Breaker(key="k")
    for outcome in ["network", None, "network"]:                       # 2 of 3 failed: too few calls yet
        events = after_call(b, RATE, "r", "s", at(0), outcome, "refused")
        assert "CircuitOpened" not in names(events)
        apply(b, events)
    opened = after_call(b, RATE, "r", "s", at(1), "timeout", "slow")   # 3 of 4 failed: 75% >= 50%
    assert names(opened) == ["CircuitCallFailed", "CircuitOpened"]
    assert opened[1].reason.startswith("3 of the last 4 calls failed (rate 75% >= 50%)")
    apply(b, opened)
    assert "3 of the last 4 calls failed" in before_call(b, RATE, "r", "s", at(2))[1]


def test_with_a_failure_rate_every_success_is_recorded_and_old_calls_leave_the_window() -> None:
    b = Breaker(key="k")
    for outcome in ["network", "network", None, None, None]:           # window of 4: F S S S -> 25%
        events = after_call(b, RATE, "r", "s", at(0), outcome, "refused")
        assert names(events) == ["CircuitCallSucceeded" if outcome is None else "CircuitCallFailed"]
        apply(b, events)
    assert names(after_call(b, RATE, "r", "s", at(0), "network", "refused")) == ["CircuitCallFailed"]  # S S S F


def test_a_change_of_state_starts_a_new_window() -> None:
    b = apply(Breaker(key="k"), [*after_call(Breaker(key="k", failures=99), RATE, "r", "s", at(0), "network", "x")])
    assert b.state == "open" and not b.recent


def test_events_already_applied_to_a_cached_breaker_are_not_applied_twice() -> None:
    b = Breaker(key="k")
    failed = after_call(b, SPEC, "r", "s", at(0), "network", "refused")[0]
    evolve(b, failed, seq=7)
    evolve(b, failed, seq=7)
    assert (b.failures, b.version) == (1, 7)


def test_http_steps_have_a_breaker_by_default_and_may_turn_it_off() -> None:
    assert circuit_of(Step(id="a", action="http_request")) == CircuitSpec()
    assert circuit_of(Step(id="a", action="http_request", circuit=False)) is None
    assert circuit_of(Step(id="a", action="shell")) is None
    assert circuit_of(Step(id="a", action="shell", circuit=True)) == CircuitSpec()
    assert circuit_of(Step(id="a", action="shell", circuit=SPEC)) is SPEC


def test_a_step_whose_trial_was_lost_with_its_executor_tries_again_and_others_still_wait() -> None:
    """A trial whose executor was killed mid-call records no outcome; the attempt is taken over and the step
    runs again. Its new call starts a fresh trial: else the breaker stayed half-open, refusing all, for ever."""
    b = Breaker(key="k", state="open", until=at(10))
    apply(b, before_call(b, SPEC, "r", "s", at(11))[0])
    assert before_call(b, SPEC, "r2", "s", at(12))[1] is not None       # another step still waits for the trial
    events, denial = before_call(b, SPEC, "r", "s", at(40))              # the same step, its next attempt
    assert (names(events), denial) == (["CircuitHalfOpened", "CircuitTrialStarted"], None)
    assert events[0].trial_lost == "r/s"
    assert circuit_sentence(events[0]).startswith("HALF-OPEN again: the trial call by r/s ended with no outcome")
    apply(b, events)
    assert (b.trials, b.trial_steps) == (1, [("r", "s")])
    apply(b, after_call(b, SPEC, "r", "s", at(41), None))
    assert b.state == "closed" and b.trial_steps == []
