"""The circuit breaker's rules, pure."""
from __future__ import annotations

from events.playbook import CircuitSpec
from services.resilience.circuit import Breaker, after_call, before_call, evolve
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
