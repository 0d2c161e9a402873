"""Recommendations from stats, by value: each rule speaks once it has seen enough, and says what it saw."""
from __future__ import annotations

from services.learning import recommend
from services.learning.facts import AttemptFailed, AttemptPassed, Check, RetryShape, StepShape
from services.learning.histogram import bucket
from services.learning.stats import StepStats, TargetStats, Tally, fold_step
from tests.helpers import at

HTTP = StepShape(action="http_request", timeout_seconds=5, target="http://api:80")


def step(shape: StepShape = HTTP, **stats) -> StepStats:
    return StepStats(playbook="deploy", step="s", shape=shape, since=at(0), until=at(3600), **stats)


def with_durations(stats: StepStats, *durations_ms: float) -> StepStats:
    for ms in durations_ms:
        fold_step(stats, AttemptPassed(at=at(1), playbook="deploy", step="s", attempt=1, duration_ms=ms))
    return stats


def test_a_step_without_a_timeout_gets_its_p99_with_headroom() -> None:
    shell = step(StepShape(action="shell"))
    assert recommend.timeout(with_durations(shell, *[1000] * 19)) is None          # not enough runs yet
    found = recommend.timeout(with_durations(shell, 2400))
    assert found.suggestion == {"timeout_seconds": 5}
    assert found.message == ("step `s` has no timeout_seconds (no limit at all); its passing attempts take up to "
                             "2.4 s (p99 of 20): set 5")
    assert (found.evidence.count, found.evidence.confidence) == (20, 0.67)


def test_a_timeout_that_cuts_off_runs_is_raised_and_one_far_too_loose_is_lowered() -> None:
    tight = with_durations(step(StepShape(action="shell", timeout_seconds=2)), *[1800] * 30)
    assert recommend.timeout(tight).suggestion == {"timeout_seconds": 4}
    timing_out = with_durations(step(StepShape(action="shell", timeout_seconds=10), failures={"timeout": 6}),
                                *[1000] * 30)
    assert recommend.timeout(timing_out).suggestion == {"timeout_seconds": 20}
    loose = with_durations(step(StepShape(action="shell", timeout_seconds=3600)), *[1000] * 30)
    assert "a hung attempt would fail sooner at 2" in recommend.timeout(loose).message
    fine = with_durations(step(StepShape(action="shell", timeout_seconds=5)), *[1000] * 30)
    assert recommend.timeout(fine) is None


def test_a_category_that_never_recovered_is_not_to_be_retried() -> None:
    shape = StepShape(action="http_request", retry=RetryShape(max_attempts=5, base_delay=1,
                                                               retry_on_errors=["temporary", "permanent"]))
    stats = step(shape, after={"permanent": Tally(40, 0), "temporary": Tally(40, 1)},
                 statuses={"permanent": {404: 40, 410: 2}})
    found, = recommend.do_not_retry(stats)
    assert found.message == "step `s`: permanent (HTTP 404, 410) never recovered in 40 tries: do not retry `permanent`"
    assert found.suggestion == {"retry": {"retry_on_errors": ["temporary"]}}
    assert recommend.do_not_retry(step(shape, after={"permanent": Tally(9, 0)})) == []


def test_retry_settings_that_cover_every_recovery_and_the_backoff_that_worked() -> None:
    shape = StepShape(action="http_request", retry=RetryShape(max_attempts=3, base_delay=0.1))
    stats = step(shape, recovered_at={2: 10, 3: 5}, after={"network": Tally(30, 15)}, exhausted={"network": 3},
                 delays={bucket(10): Tally(15, 0), bucket(1000): Tally(15, 15)})   # after 10 ms: never; 1 s: always
    found = recommend.retry(stats)
    assert found.suggestion == {"retry": {"max_attempts": 4, "retry_on_errors": ["network"], "base_delay": 1.0}}
    assert found.message == ("step `s` recovered 15 times, at attempt 3 at the latest and ran out of attempts 3 "
                             "times; retries after 1 s or more passed: retry network with max_attempts 4")
    covered = step(StepShape(action="http_request", retry=RetryShape(max_attempts=3, base_delay=1.0)),
                   recovered_at={2: 10, 3: 5}, after={"network": Tally(30, 15)}, delays={bucket(1000): Tally(15, 15)})
    assert recommend.retry(covered) is None


def test_transient_failures_of_a_step_without_retries_suggest_one() -> None:
    stats = step(not_retried={"network": 4, "timeout": 2, "permanent": 9})
    found = recommend.retry(stats)
    assert found.suggestion == {"retry": {"max_attempts": 3, "base_delay": 1.0,
                                          "retry_on_errors": ["network", "timeout"]}}
    assert recommend.retry(step(not_retried={"network": 4})) is None


def test_recurring_failures_a_handler_could_fix_and_a_handler_that_rarely_works() -> None:
    stats = step(not_retried={"authentication": 3}, exhausted={"authentication": 2, "resource": 1},
                 remediations={"pattern disk full": Tally(6, 2)})
    handler, broken = recommend.error_handlers(stats)
    assert handler.suggestion["error_handlers"][0]["category"] == "authentication" and handler.evidence.count == 5
    assert broken.message == ("step `s`: the error handler for pattern disk full remediated only 2 of 6 times: "
                              "fix its action")
    handled = step(StepShape(action="shell", handled=["authentication"]), not_retried={"authentication": 9})
    assert recommend.error_handlers(handled) == []


def test_a_check_that_always_passed_at_once_could_be_a_validator() -> None:
    check = StepShape(action="http_request", check=Check(validator={"type": "http_status", "url": "http://a/health"}))
    always = with_durations(step(check), *[20] * 20)
    assert recommend.validator(always).suggestion == {"validators": [{"type": "http_status", "url": "http://a/health"}]}
    fold_step(always, AttemptFailed(at=at(2), playbook="deploy", step="s", attempt=1, category="network",
                                    duration_ms=1))
    assert recommend.validator(always) is None
    assert recommend.validator(with_durations(step(), *[20] * 20)) is None      # it does more than check


def test_a_target_failing_in_bursts_deserves_a_breaker_or_a_lower_threshold() -> None:
    bare = TargetStats(target="db:5432", callers={"nightly/backup": 0, "report/query": 5}, bursts=3,
                       burst_failures=12, largest_burst=5)
    found = recommend.circuit_breaker(bare)
    assert found.suggestion == {"circuit": {"key": "db:5432", "failure_threshold": 3}}
    assert found.evidence.figures["steps"] == ["nightly/backup"]
    unreached = TargetStats(target="db:5432", callers={"report/query": 10}, bursts=3, burst_failures=12,
                            largest_burst=5)
    assert recommend.circuit_breaker(unreached).suggestion == {"circuit": {"key": "db:5432", "failure_threshold": 4}}
    tripping = TargetStats(target="db:5432", callers={"report/query": 3}, bursts=3, burst_failures=12,
                           largest_burst=5, openings=2)
    assert recommend.circuit_breaker(tripping) is None
    assert recommend.circuit_breaker(TargetStats(target="db", callers={"a/b": 0}, bursts=1, burst_failures=3)) is None


def test_retry_settings_the_step_has_already_are_not_advised_for_a_bucket_edge() -> None:
    """Backoffs are counted in log buckets: a base_delay of 0.1 s that works is reported back as the bucket's upper
    edge, 0.11 s. That is the setting the step has, not a change to make."""
    shape = StepShape(action="shell", retry=RetryShape(max_attempts=3, base_delay=0.1))
    stats = step(shape, recovered_at={3: 9}, after={"network": Tally(30, 9)}, delays={bucket(100): Tally(12, 9)})
    assert recommend.retry(stats) is None
    slower = step(shape, recovered_at={3: 9}, after={"network": Tally(30, 9)},
                  delays={bucket(100): Tally(12, 1), bucket(1000): Tally(12, 9)})
    assert recommend.retry(slower).suggestion["retry"]["base_delay"] == 1.0


def test_advice_from_a_handful_of_observations_says_it_is_an_early_sign() -> None:
    """Two bursts, five recoveries: enough to speak, not enough to state it as a finding."""
    shape = StepShape(action="shell", retry=RetryShape(max_attempts=5, base_delay=1))
    early, = recommend.for_step(step(shape, recovered_at={2: 5}, after={"network": Tally(5, 5)}))
    assert early.message.endswith("retry network with max_attempts 2 (an early sign: 5 observations so far)")
    settled, = recommend.for_step(step(shape, recovered_at={2: 12}, after={"network": Tally(12, 12)}))
    assert settled.message.endswith("retry network with max_attempts 2")
    bursts = recommend.circuit_breaker(TargetStats(target="db", callers={"a/b": 0}, bursts=2, burst_failures=6,
                                                   largest_burst=3))
    assert bursts.message.endswith("add one so calls fail fast (an early sign: 2 observations so far)")
