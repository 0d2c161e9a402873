"""What to change, from what was learned: pure functions from stats to recommendations with their evidence.

Each rule waits for enough observations before it speaks, says what it saw in a sentence,
and gives the playbook keys to write. Confidence grows with the count: n / (n + 10).
"""
from __future__ import annotations

import math
from typing import Any

import msgspec
from datetime import datetime

from events.insights import Evidence, Recommendation
from services.learning.histogram import bucket, upper_edge
from services.learning.stats import MAX_KEYS, MIN_BURST, BURST_GAP_SECONDS, StepStats, TargetStats
from services.domain.retry import DEFAULT_RETRY_ON

MIN_RUNS = 20            # runs before a timeout or a validator is suggested
MIN_TRIES = 10           # retries after one category before "never recovers" is said
MIN_RECOVERED = 5        # recoveries before retry settings are suggested
MIN_FAILURES = 5         # failures of one kind before a retry or an error handler is suggested
MIN_BURSTS = 2
EARLY = 10               # observations below which a recommendation says it is an early sign
HEADROOM = 2.0           # a timeout leaves this much room above the p99
TIGHT = 1.5              # a timeout below p99 x TIGHT cuts off runs that would pass
SLOWER = 1.5            # a median this many times the one before the step changed is worth saying
LOOSE = 10.0             # a timeout above the suggestion x LOOSE lets a hung attempt wait too long
REMEDIES = {"authentication": "refreshes the credential", "authorization": "obtains the access",
            "resource": "frees the resource (disk, memory)"}


def for_step(stats: StepStats) -> list[Recommendation]:
    found = [slower(stats), timeout(stats), *do_not_retry(stats), retry(stats), *error_handlers(stats),
             validator(stats)]
    return [told(r) for r in found if r is not None]


def told(recommendation: Recommendation) -> Recommendation:
    """The sentence as sure as its evidence: below EARLY observations (confidence under one half) it says it is an
    early sign, so that advice from a handful of runs does not read as a finding."""
    count = recommendation.evidence.count
    if count >= EARLY:
        return recommendation
    return msgspec.structs.replace(recommendation, message=f"{recommendation.message} (an early sign: {count} "
                                                           f"observation{'s' if count != 1 else ''} so far)")


def evidence(count: int, since: datetime | None, until: datetime | None, window: float | None = None,
             **figures: object) -> Evidence:
    return Evidence(count=count, confidence=round(count / (count + 10), 2), since=since, until=until,
                    window_seconds=window, figures={k: v for k, v in figures.items() if v is not None})


def slower(stats: StepStats) -> Recommendation | None:
    """A step whose passing attempts got markedly slower when it was last written differently: say when, and by how
    much, from enough attempts on both sides (nothing to write: a person looks at what changed)."""
    before, now = stats.before.durations if stats.before is not None else None, stats.durations
    version_before = stats.before.version if stats.before is not None else ""
    if before is None or before.count < MIN_RUNS or now.count < MIN_RUNS or stats.changed is None:
        return None
    was, is_ = before.percentile(0.5) or 0.0, now.percentile(0.5) or 0.0
    if is_ < was * SLOWER:
        return None
    version = f" in version {stats.version}" if stats.version else ""
    earlier = f" (version {version_before})" if version_before else ""
    message = (f"{_step(stats)} got slower when it changed{version} on {stats.changed:%Y-%m-%d %H:%M} UTC: its "
               f"passing attempts take {is_ / 1000:g} s at the median ({now.count} of them), against "
               f"{was / 1000:g} s ({before.count}) before{earlier}")
    return Recommendation(kind="slower", message=message, **_about(stats),
                          evidence=evidence(now.count, stats.changed, stats.until, p50_ms=is_, p50_before_ms=was,
                                            count_before=before.count, version=stats.version or None,
                                            version_before=version_before or None))


def timeout(stats: StepStats) -> Recommendation | None:
    """A `timeout_seconds` at the p99 of passing attempts with headroom, when there is none or it is poor."""
    shape, durations = stats.shape, stats.durations
    if shape is None or durations.count < MIN_RUNS:
        return None
    p99_ms = durations.percentile(0.99) or 0.0
    suggested = max(1, math.ceil(p99_ms * HEADROOM / 1000))
    configured = shape.timeout_seconds
    timeouts = stats.failures.get("timeout", 0)
    name = _step(stats)
    seen = f"its passing attempts take up to {p99_ms / 1000:g} s (p99 of {durations.count})"
    if configured is None:
        default = ("no limit at all" if shape.default_timeout is None
                   else f"the action's default of {shape.default_timeout:g} s")
        message = f"{name} has no timeout_seconds ({default}); {seen}: set {suggested}"
    elif timeouts >= MIN_FAILURES or configured < p99_ms / 1000 * TIGHT:
        suggested = max(suggested, math.ceil(configured * HEADROOM)) if timeouts >= MIN_FAILURES else suggested
        message = f"{name} times out at {configured:g} s ({timeouts} timeouts); {seen}: raise it to {suggested}"
    elif configured > suggested * LOOSE and configured - suggested >= 60:
        message = f"{name} waits up to {configured:g} s; {seen}: a hung attempt would fail sooner at {suggested}"
    else:
        return None
    return Recommendation(kind="timeout", message=message, **_about(stats),
                          suggestion={"timeout_seconds": suggested},
                          evidence=evidence(durations.count, stats.since, stats.until, p50_ms=durations.percentile(0.5),
                                            p95_ms=durations.percentile(0.95), p99_ms=p99_ms, timeouts=timeouts,
                                            configured=configured))


def do_not_retry(stats: StepStats) -> list[Recommendation]:
    """Categories whose retries never once passed: retrying them only delays the failure."""
    found = []
    allowed = _retried_categories(stats)
    for category, tally in sorted(stats.after.items()):
        if tally.tries < MIN_TRIES or tally.worked:
            continue
        seen = stats.statuses.get(category, {})
        statuses = sorted(seen, key=lambda status: (-seen[status], status))
        what = f"{category} (HTTP {', '.join(map(str, statuses[:3]))})" if statuses else category
        found.append(Recommendation(
            kind="do_not_retry", **_about(stats),
            message=f"{_step(stats)}: {what} never recovered in {tally.tries} tries: do not retry `{category}`",
            suggestion={"retry": {"retry_on_errors": [c for c in allowed if c != category]}},
            evidence=evidence(tally.tries, stats.since, stats.until, tries=tally.tries, recovered=0,
                              statuses=statuses[:3] or None)))
    return found


def retry(stats: StepStats) -> Recommendation | None:
    """Retry settings that would have covered every recovered failure; or a retry where transient failures stood."""
    shape = stats.shape
    if shape is None:
        return None
    recovered = sum(stats.recovered_at.values())
    if recovered >= MIN_RECOVERED:
        recovering = sorted(c for c, tally in stats.after.items() if tally.worked)
        ran_out = sum(stats.exhausted.get(c, 0) for c in recovering)
        needed = max(stats.recovered_at)
        attempts = needed + 1 if ran_out else needed
        works = _delay_that_works(stats)
        delay = works[0] if works is not None else None
        suggestion = {"max_attempts": attempts, "retry_on_errors": recovering}
        if delay is not None:
            suggestion["base_delay"] = delay
        current = shape.retry
        # The backoff that worked is known to its bucket: a base_delay in that bucket is that backoff already.
        if current is not None and current.max_attempts == attempts and (
                works is None or bucket(current.base_delay * 1000) == works[1]) and set(recovering) <= set(
                _retried_categories(stats)):
            return None
        after = f"; retries after {delay:g} s or more passed" if delay is not None else ""
        ran = f" and ran out of attempts {ran_out} times" if ran_out else ""
        message = (f"{_step(stats)} recovered {recovered} times, at attempt {needed} at the latest{ran}{after}: "
                   f"retry {', '.join(recovering)} with max_attempts {attempts}")
        return Recommendation(kind="retry", message=message, **_about(stats),
                              suggestion={"retry": suggestion},
                              evidence=evidence(recovered, stats.since, stats.until, recovered_at=stats.recovered_at,
                                                exhausted=ran_out or None, base_delay=delay))
    transient = {c: n for c, n in stats.not_retried.items() if c in DEFAULT_RETRY_ON}
    if shape.retry is None and sum(transient.values()) >= MIN_FAILURES:
        count = sum(transient.values())
        kinds = sorted(transient)
        return Recommendation(
            kind="retry", **_about(stats),
            message=f"{_step(stats)} failed {count} times with {', '.join(kinds)} errors and no retry policy: "
                    "try again before failing the run",
            suggestion={"retry": {"max_attempts": 3, "base_delay": 1.0, "retry_on_errors": kinds}},
            evidence=evidence(count, stats.since, stats.until, not_retried=transient))
    return None


def error_handlers(stats: StepStats) -> list[Recommendation]:
    """Recurring failures a remediation could fix and no handler covers; and handlers that rarely work."""
    found = []
    handled = set(stats.shape.handled) if stats.shape else set()
    for category, remedy in REMEDIES.items():
        count = stats.not_retried.get(category, 0) + stats.exhausted.get(category, 0)
        if count >= MIN_FAILURES and category not in handled:
            found.append(Recommendation(
                kind="error_handler", **_about(stats),
                message=f"{_step(stats)} failed for good {count} times with `{category}`; no error handler "
                        f"covers it: add one that {remedy}, then retries",
                suggestion={"error_handlers": [{"category": category, "then": "retry",
                                                "run": {"action": "shell", "args": {"command": "..."}}}]},
                evidence=evidence(count, stats.since, stats.until, failures=count)))
    for handler, tally in sorted(stats.remediations.items()):
        if tally.tries >= MIN_FAILURES and tally.worked * 2 < tally.tries:
            found.append(Recommendation(
                kind="fix_error_handler", **_about(stats),
                message=f"{_step(stats)}: the error handler for {handler} remediated only {tally.worked} "
                        f"of {tally.tries} times: fix its action",
                evidence=evidence(tally.tries, stats.since, stats.until, tries=tally.tries, worked=tally.worked)))
    return found


def validator(stats: StepStats) -> Recommendation | None:
    """A step that only checks and always passed at once: a validator on the step after it does the same."""
    shape = stats.shape
    if shape is None or shape.check is None or stats.passed < MIN_RUNS:
        return None
    if stats.failed_attempts or stats.first_try != stats.passed:
        return None
    return Recommendation(
        kind="validator", **_about(stats),
        message=f"{_step(stats)} passed all {stats.passed} runs at the first attempt and only checks: "
                "it could be a validator of the step that needs it",
        suggestion={"validators": [shape.check.validator]},
        evidence=evidence(stats.passed, stats.since, stats.until, passed=stats.passed))


def circuit_breaker(stats: TargetStats) -> Recommendation | None:
    """A target whose failures come in bursts deserves a breaker, or a breaker that trips within a burst. A target
    is shared: bursts that all come from one person's own texts (failing on purpose, perhaps) advise no one."""
    if stats.bursts < MIN_BURSTS or not stats.callers or _one_persons_texts(stats):
        return None
    unguarded = sorted(ref for ref, threshold in stats.callers.items() if not threshold)
    mean = stats.burst_failures / stats.bursts
    seen = (f"{stats.target} failed in {stats.bursts} bursts (up to {stats.largest_burst} failures in a row, "
            f"each within {BURST_GAP_SECONDS:g} s{_whose(stats)})")
    if unguarded:
        message = f"{seen}; {', '.join(unguarded)} call it without a circuit breaker: add one so calls fail fast"
        threshold = MIN_BURST
    else:
        lowest = min(stats.callers.values())
        if stats.openings or stats.largest_burst >= lowest:
            return None
        threshold = max(2, math.floor(mean))
        message = f"{seen}, never reaching its breaker's failure_threshold of {lowest}: lower it to {threshold}"
    return told(Recommendation(kind="circuit_breaker", message=message, target=stats.target,
                          suggestion={"circuit": {"key": stats.target, "failure_threshold": threshold}},
                          evidence=evidence(stats.bursts, stats.since, stats.until, BURST_GAP_SECONDS,
                                            bursts=stats.bursts, largest_burst=stats.largest_burst,
                                            mean_burst=round(mean, 1), openings=stats.openings,
                                            steps=unguarded or None,
                                            playbooks=len(stats.burst_playbooks) or None,
                                            starters=len(_starters(stats)) or None)))


def _starters(stats: TargetStats) -> set[str]:
    return {whose.split(":", 1)[1] for whose in stats.burst_sources}


def _one_persons_texts(stats: TargetStats) -> bool:
    return len(stats.burst_sources) == 1 and next(iter(stats.burst_sources)).startswith("text:")


def _whose(stats: TargetStats) -> str:
    """How many playbooks and people the bursts came from (known for bursts learned since they were counted)."""
    if not stats.burst_sources:
        return ""
    playbooks, starters = len(stats.burst_playbooks), len(_starters(stats))
    more = [" or more" if count >= MAX_KEYS else "" for count in (playbooks, len(stats.burst_sources))]
    return (f", in runs of {playbooks}{more[0]} playbook{'s' if playbooks != 1 else ''} started by "
            f"{starters}{more[1]} {'people' if starters != 1 else 'person'}")


def _about(stats: StepStats) -> dict[str, Any]:
    return {"playbook": stats.playbook, "environment": stats.environment or None, "step": stats.step}


def _step(stats: StepStats) -> str:
    """The step, and where its runs ran: what one environment teaches is said of it alone."""
    return f"step `{stats.step}`" + (f" in {stats.environment}" if stats.environment else "")


def _retried_categories(stats: StepStats) -> list[str]:
    retry_policy = stats.shape.retry if stats.shape else None
    if retry_policy is not None and retry_policy.retry_on_errors is not None:
        return list(retry_policy.retry_on_errors)
    return list(DEFAULT_RETRY_ON)


def _delay_that_works(stats: StepStats) -> tuple[float, int] | None:
    """The shortest backoff after which at least half the retries passed (seconds, 2 significant digits), and its
    histogram bucket."""
    for index in sorted(stats.delays):
        tally = stats.delays[index]
        if tally.tries >= MIN_FAILURES and tally.worked * 2 >= tally.tries:
            return float(f"{upper_edge(index) / 1000:.2g}"), index
    return None
