"""A bounded number of label values for /metrics: the first playbooks, steps and breakers seen keep
their own series, the rest are added up under `(other)`.

Playbook names, step ids and breaker keys are whoever writes a playbook's to choose: one run of
a playbook with 10,000 steps would otherwise add 180,000 series to every scrape, for good. The
first ones seen (the folds' dicts keep that order, through snapshots and rebuilds) stay named, so
a series never moves between a name and `(other)` and every counter only grows. The dashboard's
JSON (/api/metrics) names the slowest steps instead (projections/metrics.py, MOST_STEPS).
"""
from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from projections.metrics import KEY_SEP, Metrics, PlaybookStats, StepStats

OTHER = "(other)"           # a playbook really named so is counted under it too: no label pair twice
MAX_PLAYBOOKS = 200         # about 16 series each
MAX_STEPS = 1000            # about 18 series each (a duration histogram)
MAX_STEPS_PER_PLAYBOOK = 50  # so that one wide playbook seen first leaves room for the others' steps
MAX_CIRCUITS = 200          # 4 series each


def first_seen(keys: Iterable[str], most: int) -> set[str]:
    return set(islice((key for key in keys if key != OTHER), most))


def playbooks(metrics: Metrics) -> dict[str, PlaybookStats]:
    named = first_seen(metrics.playbooks, MAX_PLAYBOOKS)
    bounded: dict[str, PlaybookStats] = {}
    for name, stats in metrics.playbooks.items():
        label = name if name in named else OTHER
        bounded[label] = _added(bounded[label], stats) if label in bounded else stats
    return bounded


def steps(metrics: Metrics) -> dict[tuple[str, str], StepStats]:
    """(playbook, step) -> stats; a step of a playbook counted under `(other)` is `(other)` too."""
    named_playbooks = first_seen(metrics.playbooks, MAX_PLAYBOOKS)
    named: set[str] = set()
    per_playbook: dict[str, int] = {}
    for key in metrics.steps:
        playbook = key.partition(KEY_SEP)[0]
        if len(named) == MAX_STEPS:
            break
        if playbook in named_playbooks and per_playbook.get(playbook, 0) < MAX_STEPS_PER_PLAYBOOK:
            named.add(key)
            per_playbook[playbook] = per_playbook.get(playbook, 0) + 1
    bounded: dict[tuple[str, str], StepStats] = {}
    for key, stats in metrics.steps.items():
        playbook, _, step = key.partition(KEY_SEP)
        label = (playbook, step) if key in named else (playbook if playbook in named_playbooks else OTHER, OTHER)
        bounded[label] = _added_step(bounded[label], stats) if label in bounded else stats
    return bounded


def circuits(metrics: Metrics) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Breakers in each state ({key: {state: n}}: 1 for a named one) and their openings, by key."""
    named = first_seen(metrics.circuits, MAX_CIRCUITS)
    states: dict[str, dict[str, int]] = {}
    openings: dict[str, int] = {}
    for key, state in metrics.circuits.items():
        label = key if key in named else OTHER
        in_states = states.setdefault(label, {})
        in_states[state] = in_states.get(state, 0) + 1
        openings[label] = openings.get(label, 0) + metrics.circuit_openings.get(key, 0)
    return states, openings


def _added(a: PlaybookStats, b: PlaybookStats) -> PlaybookStats:
    return PlaybookStats(runs=a.runs + b.runs, dry_runs=a.dry_runs + b.dry_runs,
                         by_status=_summed(a.by_status, b.by_status), outcomes=_summed(a.outcomes, b.outcomes),
                         recent=[], completed_count=a.completed_count + b.completed_count,
                         completed_sum_ms=a.completed_sum_ms + b.completed_sum_ms)


def _added_step(a: StepStats, b: StepStats) -> StepStats:
    return StepStats(count=a.count + b.count, sum_ms=a.sum_ms + b.sum_ms,
                     buckets=[x + y for x, y in zip(a.buckets, b.buckets)],
                     succeeded=a.succeeded + b.succeeded, failed=a.failed + b.failed, retries=a.retries + b.retries)


def _summed(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {key: a.get(key, 0) + b.get(key, 0) for key in a.keys() | b.keys()}
