"""The knowledge as users read it: insights per playbook, step and target, with their recommendations."""
from __future__ import annotations

from collections.abc import Callable

from events.insights import (
    Correlation, Distribution, Insights, Outcome, PlaybookInsights, StepInsights, TargetInsights,
)
from services.learning import recommend
from services.learning.histogram import Histogram
from services.learning.knowledge import Correlations, Knowledge, PlaybookProfile, StepProfile, TargetProfile
from services.learning.stats import (
    CORRELATION_WINDOW_SECONDS, CorrelationStats, PlaybookStats, StepStats, TargetStats, ref,
)

MIN_TOGETHER = 2             # windows two steps failed together in before it is worth saying


# May the asker read this playbook's runs in this environment (None: without one)? None: the everything-reader.
Readable = Callable[[str, str | None], bool]


def insights_of(knowledge: Knowledge, playbook: str | None = None, environment: str | None = None,
                readable: Readable | None = None) -> Insights:
    """What was learned (of one playbook, in one environment, or all), as far as `readable` lets the asker see:
    targets and correlations span every playbook and environment, so only an everything-reader (`readable` None)
    reads them. Call between batches, on the knowledge's thread."""
    catalog = knowledge.catalog()
    names = [playbook] if playbook is not None else sorted(catalog.playbooks)
    playbooks = []
    for name in names:
        for where in sorted(catalog.places(name) or [""]) if name in catalog.playbooks else []:
            if environment is not None and where != environment:
                continue
            if readable is not None and not readable(name, where or None):
                continue
            stats = knowledge.read(PlaybookProfile, name, where)
            if stats is not None:
                steps = [s for s in (knowledge.read(StepProfile, name, where, step) for step in stats.steps)
                         if s is not None]
                playbooks.append(playbook_insights(stats, steps))
    if readable is not None:
        return Insights(position=knowledge.position(), playbooks=playbooks)
    called = None if playbook is None else {s.target for p in playbooks for s in p.steps if s.target}
    targets = [target_insights(t) for t in (knowledge.read(TargetProfile, key) for key in sorted(catalog.targets)
                                            if called is None or key in called) if t is not None]
    steps = None if playbook is None else {ref(playbook, s.step) for p in playbooks for s in p.steps}
    correlations = correlation_insights(knowledge.read(Correlations) or CorrelationStats(), steps)
    return Insights(position=knowledge.position(), playbooks=playbooks, targets=targets, correlations=correlations)


def playbook_insights(stats: PlaybookStats, steps: list[StepStats]) -> PlaybookInsights:
    before = stats.before or PlaybookStats(playbook=stats.playbook)
    return PlaybookInsights(
        playbook=stats.playbook, environment=stats.environment or None, runs=stats.runs,
        outcomes=dict(stats.outcomes),
        success_rate=_success(stats.outcomes), durations=distribution(stats.durations),
        steps=[step_insights(s) for s in steps],
        recommendations=[r for s in steps for r in recommend.for_step(s)], since=stats.since, until=stats.until,
        version=stats.version or None, changed=stats.changed, version_before=before.version or None,
        runs_before=before.runs, outcomes_before=dict(before.outcomes), success_rate_before=_success(before.outcomes))


def step_insights(stats: StepStats) -> StepInsights:
    shape = stats.shape
    return StepInsights(
        step=stats.step, action=shape.action if shape else "", target=shape.target if shape else None,
        attempts=stats.passed + stats.failed_attempts, passed=stats.passed, gave_up=stats.gave_up,
        success_rate=_rate(stats.passed, stats.passed + stats.gave_up),
        first_attempt_rate=_rate(stats.first_try, stats.passed + stats.gave_up),
        durations=distribution(stats.durations), version=stats.version or None, changed=stats.changed,
        durations_before=distribution(stats.before.durations) if stats.before is not None else None,
        version_before=(stats.before.version or None) if stats.before is not None else None,
        failures_by_category=dict(stats.failures),
        recovered_at_attempt=dict(stats.recovered_at),
        retries_after={c: Outcome(tries=t.tries, worked=t.worked) for c, t in stats.after.items()},
        remediations={h: Outcome(tries=t.tries, worked=t.worked) for h, t in stats.remediations.items()},
        approval_waits=distribution(stats.approval_waits), approvals=dict(stats.approvals),
        since=stats.since, until=stats.until)


def target_insights(stats: TargetStats) -> TargetInsights:
    found = recommend.circuit_breaker(stats)
    return TargetInsights(
        target=stats.target, calls=stats.passed + stats.failed, failures=stats.failed,
        failures_by_category=dict(stats.failures), bursts=stats.bursts, largest_burst=stats.largest_burst,
        breaker_openings=stats.openings, steps=sorted(stats.callers), recommendations=[found] if found else [],
        since=stats.since, until=stats.until)


def correlation_insights(stats: CorrelationStats, steps: set[str] | None = None) -> list[Correlation]:
    pairs = [p for p in stats.pairs if p.together >= MIN_TOGETHER and (steps is None or steps & set(p.steps))]
    pairs.sort(key=lambda p: (-p.together, p.steps))
    return [Correlation(steps=list(p.steps), together=p.together, window_seconds=CORRELATION_WINDOW_SECONDS,
                        targets=sorted(p.targets), last=p.last) for p in pairs]


def distribution(histogram: Histogram) -> Distribution | None:
    if not histogram.count:
        return None
    return Distribution(count=histogram.count, p50_ms=histogram.percentile(0.5), p95_ms=histogram.percentile(0.95),
                        p99_ms=histogram.percentile(0.99), max_ms=round(histogram.max_ms, 3))


def _success(outcomes: dict[str, int]) -> float | None:
    return _rate(outcomes.get("completed", 0), sum(outcomes.values()))


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
