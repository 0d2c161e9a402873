"""What the knowledge keeps per step and target stays bounded and exact enough, however many runs."""
from __future__ import annotations

from datetime import timedelta

import msgspec
from hypothesis import given, strategies as st

from services.learning.facts import AttemptFailed, AttemptPassed, RunBegan, RunEnded, StepConfigured, StepShape
from services.learning.histogram import MAX_BUCKET, Histogram
from services.learning.stats import (
    MAX_KEYS, MAX_PAIRS, MAX_RECENT, CorrelationStats, PlaybookStats, StepStats, TargetStats, fold_correlations,
    fold_playbook, fold_step, fold_target,
)
from tests.helpers import at

TARGET = "http://db.internal:80"


def failed(step: str, seconds: float, category: str = "network", playbook: str = "p", **extra) -> AttemptFailed:
    return AttemptFailed(at=at(seconds), playbook=playbook, step=step, attempt=1, category=category, duration_ms=5,
                         target=TARGET, **extra)


def passed(step: str, seconds: float, duration_ms: float = 10, **extra) -> AttemptPassed:
    return AttemptPassed(at=at(seconds), playbook="p", step=step, attempt=extra.pop("attempt", 1),
                         duration_ms=duration_ms, target=TARGET, **extra)


@given(st.lists(st.floats(min_value=0, max_value=1e7), min_size=1, max_size=300))
def test_percentiles_are_within_ten_percent_and_never_above_the_largest_value(values) -> None:
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[max(0, -(-int(q * 1000) * len(ordered) // 1000) - 1)]
        estimate = histogram.percentile(q)
        assert estimate <= max(values) + 1e-3
        assert estimate >= exact - 1e-3 and estimate <= max(exact * 1.091, 1.1)


def test_a_histogram_of_many_durations_keeps_a_bounded_number_of_counters() -> None:
    histogram = Histogram()
    for n in range(200_000):
        histogram.add((n * 7919) % 10**9 / 10)
    assert histogram.count == 200_000 and len(histogram.buckets) <= MAX_BUCKET + 1
    assert len(msgspec.json.encode(histogram)) < 4000


def test_a_step_seen_in_twenty_thousand_runs_keeps_a_small_state() -> None:
    stats = StepStats(playbook="p", step="s")
    for n in range(20_000):
        fold_step(stats, failed("s", n, category="temporary", status=500 + n % 100, retried=True,
                                after="temporary", delay_ms=n % 5000))
        fold_step(stats, passed("s", n, duration_ms=n % 3000, after="temporary", delay_ms=n, attempt=2 + n % 50,
                                waited_ms=n))
    assert stats.passed == 20_000 and stats.failed_attempts == 20_000
    assert len(stats.statuses["temporary"]) == MAX_KEYS and max(stats.recovered_at) == MAX_KEYS
    assert len(msgspec.json.encode(stats)) < 20_000


def test_failures_within_a_minute_of_each_other_make_a_burst_that_a_success_ends() -> None:
    target = TargetStats(target=TARGET)
    fold_target(target, StepConfigured(at=at(0), playbook="p", step="s", shape=StepShape(action="x", target=TARGET)))
    for seconds in (0, 30, 80, 130):          # a burst of four
        fold_target(target, failed("s", seconds))
    fold_target(target, passed("s", 140))
    for seconds in (150, 160):                # two: not a burst
        fold_target(target, failed("s", seconds))
    for seconds in (1000, 1010, 1020):        # after a long quiet time: a second burst
        fold_target(target, failed("s", seconds))
    fold_target(target, failed("s", 1030, category="permanent"))   # says nothing about the target
    assert (target.bursts, target.largest_burst, target.burst_failures, target.failed) == (2, 4, 7, 10)
    assert target.callers == {"p/s": 0}


def test_steps_failing_within_the_window_are_counted_together_once_per_window() -> None:
    stats = CorrelationStats()
    for hour in range(3):
        base = hour * 3600
        for seconds, step in ((0, "a"), (10, "b"), (20, "a"), (30, "b"), (40, "c")):
            fold_correlations(stats, failed(step, base + seconds))
    fold_correlations(stats, failed("a", 20_000, category="authentication"))   # not a target failure
    together = {tuple(p.steps): p.together for p in stats.pairs}
    assert together == {("p/a", "p/b"): 3, ("p/a", "p/c"): 3, ("p/b", "p/c"): 3}


def test_correlations_stay_bounded_when_every_step_fails_with_every_other() -> None:
    stats = CorrelationStats()
    for n in range(5000):
        fold_correlations(stats, failed(f"s{n % 400}", n * 0.5, playbook=f"p{n % 7}"))
    assert len(stats.pairs) <= MAX_PAIRS and len(stats.recent) <= MAX_RECENT
    assert all(_apart <= timedelta(seconds=120) for _apart in
               (stats.recent[-1].at - r.at for r in stats.recent))


def test_a_playbooks_figures_are_of_its_version_and_a_run_of_the_one_before_counts_there() -> None:
    stats = PlaybookStats(playbook="p")
    for fact in (RunBegan(at=at(0), playbook="p", steps=["s"], version="1", definition="one"),
                 RunEnded(at=at(1), playbook="p", outcome="failed", duration_ms=1, definition="one"),
                 RunBegan(at=at(2), playbook="p", steps=["s"], version="1", definition="one"),
                 RunBegan(at=at(3), playbook="p", steps=["s"], version="2", definition="two"),
                 RunEnded(at=at(4), playbook="p", outcome="failed", duration_ms=1, definition="one"),  # begun before
                 RunEnded(at=at(5), playbook="p", outcome="completed", duration_ms=1, definition="two")):
        fold_playbook(stats, fact)
    assert (stats.version, stats.changed, stats.runs, stats.outcomes) == ("2", at(3), 1, {"completed": 1})
    assert stats.before is not None
    assert (stats.before.version, stats.before.runs, stats.before.outcomes) == ("1", 2, {"failed": 2})
    fold_playbook(stats, RunBegan(at=at(6), playbook="p", steps=["s"], version="1", definition="one"))
    assert (stats.version, stats.runs, stats.outcomes) == ("1", 3, {"failed": 2})      # a canary: back whole
    assert stats.before is not None and (stats.before.version, stats.before.runs) == ("2", 1)
