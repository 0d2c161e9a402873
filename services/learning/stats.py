"""What the engine knows about each step, playbook and target, and across them: bounded state, pure folds.

Every field stays bounded however many runs are folded: counters, log histograms, and
maps capped at a few dozen keys (categories are a fixed set; new HTTP statuses, callers
or step pairs beyond the cap are not added). Time is the events' own, so a rebuild folds
to exactly the same state.
"""
from __future__ import annotations

from datetime import datetime

import msgspec

from services.learning.facts import (
    ApprovalDecided, AttemptFailed, AttemptPassed, BreakerOpened, Fact, RemediationEnded, RunBegan, RunEnded,
    RunReopened, StepConfigured, StepShape,
)
from services.learning.histogram import Histogram, bucket
from services.domain.breaker import TARGET_FAILURES

MIN_BURST = 3                        # target failures in a row, each within the gap, that make a burst
BURST_GAP_SECONDS = 60.0
CORRELATION_WINDOW_SECONDS = 120.0   # two steps failing this close "failed together"
MAX_KEYS = 20                        # HTTP statuses, remediation handlers, attempts
MAX_CALLERS = 50
MAX_STEPS = 500
MAX_PAIRS = 50
MAX_RECENT = 64
MAX_TARGETS_PER_PAIR = 5


class Tally(msgspec.Struct, array_like=True):
    tries: int = 0
    worked: int = 0


class StepStats(msgspec.Struct, kw_only=True):
    playbook: str
    step: str
    environment: str = ""            # "": runs without one
    shape: StepShape | None = None
    since: datetime | None = None
    until: datetime | None = None
    passed: int = 0                  # runs in which the step passed (once each)
    first_try: int = 0               # ... at its first attempt
    failed_attempts: int = 0
    gave_up: int = 0                 # runs in which it failed for good
    durations: Histogram = msgspec.field(default_factory=Histogram)     # attempts that passed, as the step is now
    version: str = ""                            # the playbook version the step is as of ("": a text, or unknown)
    changed: datetime | None = None              # when the step last changed (as written): everything above and
                                                 # below is of its runs since, but the approvals
    before: StepStats | None = None              # the step as it was written before that change (its own
                                                 # `before` empty): a run of that way again makes it current again
    failures: dict[str, int] = {}                # by category
    statuses: dict[str, dict[int, int]] = {}     # category -> HTTP statuses of failed attempts
    after: dict[str, Tally] = {}                 # retries after a failure of this category, and those that passed
    delays: dict[int, Tally] = {}                # retries by the bucket of their backoff, and those that passed
    recovered_at: dict[int, int] = {}            # the attempt that passed after failures
    waited: Histogram = msgspec.field(default_factory=Histogram)        # backoff waited before recovering
    exhausted: dict[str, int] = {}               # gave up with every attempt used, by category
    not_retried: dict[str, int] = {}             # gave up without retrying, by category
    remediations: dict[str, Tally] = {}          # error handler -> runs, and those remediated
    approval_waits: Histogram = msgspec.field(default_factory=Histogram)
    approvals: dict[str, int] = {}


class PlaybookStats(msgspec.Struct, kw_only=True):
    playbook: str
    environment: str = ""
    since: datetime | None = None
    until: datetime | None = None
    runs: int = 0
    outcomes: dict[str, int] = {}
    durations: Histogram = msgspec.field(default_factory=Histogram)     # completed runs
    steps: list[str] = []            # as the latest run's playbook has them
    definition: str = ""             # the playbook as its latest run had it (a digest; "": unknown)
    version: str = ""                # ... and its catalog version ("": a text)
    changed: datetime | None = None  # when it was last run written differently: the figures above are of runs since
    before: PlaybookStats | None = None   # its runs as it was written before that change (its own `before` empty)


class Burst(msgspec.Struct, kw_only=True):
    size: int = 0
    start: datetime | None = None
    last: datetime | None = None
    pending: list[list[str]] = []    # [playbook, source] of its failures, until it is a burst


def source(starter: str, text: bool) -> str:
    """Whose runs a failure came from: a starter's own texts are theirs alone; catalog runs are the team's."""
    return f"text:{starter}" if text else f"catalog:{starter}"


class TargetStats(msgspec.Struct, kw_only=True):
    target: str
    since: datetime | None = None
    until: datetime | None = None
    passed: int = 0
    failed: int = 0
    failures: dict[str, int] = {}
    callers: dict[str, int] = {}     # "playbook/step" -> its breaker's failure_threshold (0: no breaker)
    burst: Burst = msgspec.field(default_factory=Burst)
    bursts: int = 0
    burst_failures: int = 0          # failures inside bursts, for their mean size
    largest_burst: int = 0
    openings: int = 0                # times its breaker opened
    burst_playbooks: dict[str, int] = {}    # failures inside bursts, by the playbook they came from
    burst_sources: dict[str, int] = {}      # ... and by whose runs (`source`)


class Recent(msgspec.Struct, array_like=True):
    ref: str
    target: str
    at: datetime


class Pair(msgspec.Struct, kw_only=True):
    steps: list[str]
    together: int = 1
    last: datetime
    targets: list[str] = []


class CorrelationStats(msgspec.Struct, kw_only=True):
    recent: list[Recent] = []        # the latest target failure of each step, within the window
    pairs: list[Pair] = []


def ref(playbook: str, step: str) -> str:
    return f"{playbook}/{step}"


def fold_step(stats: StepStats, fact: Fact) -> None:
    _seen(stats, fact.at)
    match fact:
        case StepConfigured(shape=shape):
            _configured(stats, shape, fact.version, fact.at)
        case AttemptPassed() | AttemptFailed() if stats.before is not None and _earlier(stats, fact.definition):
            fold_step(stats.before, fact)        # a run begun before the step changed: of the way it was
        case AttemptPassed():
            stats.passed += 1
            stats.durations.add(fact.duration_ms)
            if fact.attempt == 1:
                stats.first_try += 1
            else:
                _count(stats.recovered_at, min(fact.attempt, MAX_KEYS))
                stats.waited.add(fact.waited_ms)
            _retried(stats, fact.after, fact.delay_ms, worked=True)
        case AttemptFailed():
            stats.failed_attempts += 1
            _count(stats.failures, fact.category)
            if fact.status is not None:
                _count(stats.statuses.setdefault(fact.category, {}), fact.status)
            _retried(stats, fact.after, fact.delay_ms, worked=False)
            if fact.gave_up:
                stats.gave_up += 1
                _count(stats.exhausted if fact.exhausted else stats.not_retried, fact.category)
        case RemediationEnded():
            _tally(stats.remediations, fact.handler, fact.succeeded)
        case ApprovalDecided():
            stats.approval_waits.add(fact.waited_ms)
            _count(stats.approvals, fact.outcome)
        case RunReopened():
            stats.gave_up = max(0, stats.gave_up - 1)


def _configured(stats: StepStats, shape: StepShape, version: str, at: datetime) -> None:
    """The step as its latest run has it. Written differently, it is learned afresh (what the old way did is no
    evidence about the new one: its retries, failures, durations); the old way is kept beside, to compare (a step
    that got slower when the playbook changed shows it), and comes back whole if runs of it come back (two versions
    in use at once, a canary)."""
    now = stats.shape.definition if stats.shape is not None else ""
    if stats.shape is None or not now or shape.definition == now:
        stats.version = stats.version or version
        stats.shape = shape
        return
    earlier = stats.before
    kept = {name: getattr(stats, name) for name in KEPT_ACROSS_CHANGES}
    previous = msgspec.structs.replace(stats, before=None)
    back = earlier is not None and earlier.shape is not None and earlier.shape.definition == shape.definition
    source = earlier if back and earlier is not None else StepStats(playbook=stats.playbook, step=stats.step)
    for name in stats.__struct_fields__:
        setattr(stats, name, kept[name] if name in KEPT_ACROSS_CHANGES else getattr(source, name))
    stats.before = previous
    if not back:
        stats.version, stats.changed, stats.since, stats.until = version, at, at, at
    stats.shape = shape


# What a step's new way of being written does not start afresh: who it is, and how long people took at its gate.
KEPT_ACROSS_CHANGES = frozenset({"playbook", "step", "environment", "approval_waits", "approvals"})


def _earlier(stats: StepStats, definition: str) -> bool:
    """Is this attempt of the step as it was written before its last change?"""
    before = stats.before.shape.definition if stats.before is not None and stats.before.shape is not None else ""
    current = stats.shape.definition if stats.shape is not None else ""
    return bool(definition) and definition != current and definition == before


def fold_playbook(stats: PlaybookStats, fact: Fact) -> None:
    _seen(stats, fact.at)
    match fact:
        case RunBegan():
            _written(stats, fact)
            stats.runs += 1
            stats.steps = fact.steps[:MAX_STEPS]
        case RunEnded() | RunReopened() if _ran_before(stats, fact.definition):
            assert stats.before is not None
            fold_playbook(stats.before, fact)      # a run begun before the playbook changed: of the way it was
        case RunEnded():
            _count(stats.outcomes, fact.outcome)
            if fact.outcome == "completed":
                stats.durations.add(fact.duration_ms)
        case RunReopened():   # only a failed or cancelled run is retried: no completed duration to take back
            if stats.outcomes.get(fact.outcome, 0) > 1:
                stats.outcomes[fact.outcome] -= 1
            else:
                stats.outcomes.pop(fact.outcome, None)


def _written(stats: PlaybookStats, began: RunBegan) -> None:
    """A run of the playbook written differently (another version, an edited text) starts its figures afresh: a
    success rate across a broken and a fixed version describes neither. The way before is kept beside, and comes
    back whole when its runs do (two versions in use at once), as a step's does."""
    if not began.definition or not stats.definition or began.definition == stats.definition:
        stats.definition = stats.definition or began.definition
        stats.version = stats.version or began.version
        return
    earlier = stats.before
    back = earlier is not None and earlier.definition == began.definition
    now = msgspec.structs.replace(stats, before=None)
    source = earlier if back and earlier is not None else PlaybookStats(playbook=stats.playbook)
    for name in ("runs", "outcomes", "durations", "since", "until", "changed", "definition", "version"):
        setattr(stats, name, getattr(source, name))
    stats.before = now
    if not back:
        stats.changed = stats.since = stats.until = began.at
        stats.definition, stats.version = began.definition, began.version


def _ran_before(stats: PlaybookStats, definition: str) -> bool:
    """Did this run follow the playbook as it was written before its last change?"""
    return (bool(definition) and stats.before is not None and definition != stats.definition
            and definition == stats.before.definition)


def fold_target(stats: TargetStats, fact: Fact) -> None:
    _seen(stats, fact.at)
    match fact:
        case StepConfigured():
            if fact.shape.target == stats.target:
                key = ref(fact.playbook, fact.step)
                if key in stats.callers or len(stats.callers) < MAX_CALLERS:
                    stats.callers[key] = fact.shape.breaker_threshold or 0
        case AttemptPassed():
            stats.passed += 1
            stats.burst = Burst()
        case AttemptFailed():
            stats.failed += 1
            _count(stats.failures, fact.category)
            if fact.category in TARGET_FAILURES:
                _burst(stats, fact.at, [fact.playbook, source(fact.starter, fact.text)])
        case BreakerOpened():
            stats.openings += 1


def fold_correlations(stats: CorrelationStats, fact: Fact) -> None:
    """Pairs of steps whose target failures fall within the window of each other, counted once per window."""
    if not isinstance(fact, AttemptFailed) or fact.category not in TARGET_FAILURES:
        return
    me, at = ref(fact.playbook, fact.step), fact.at
    stats.recent = [r for r in stats.recent if r.ref != me and _apart(at, r.at) <= CORRELATION_WINDOW_SECONDS]
    for other in stats.recent:
        steps = sorted((me, other.ref))
        pair = next((p for p in stats.pairs if p.steps == steps), None)
        if pair is None:
            if len(stats.pairs) >= MAX_PAIRS:
                stats.pairs.remove(min(stats.pairs, key=lambda p: (p.together, p.last)))
            pair = Pair(steps=steps, last=at)
            stats.pairs.append(pair)
        elif _apart(at, pair.last) > CORRELATION_WINDOW_SECONDS:
            pair.together += 1
            pair.last = at
        for target in (fact.target, other.target):
            if target and target not in pair.targets and len(pair.targets) < MAX_TARGETS_PER_PAIR:
                pair.targets.append(target)
    stats.recent = [*stats.recent, Recent(me, fact.target or "", at)][-MAX_RECENT:]


def _burst(stats: TargetStats, at: datetime, whence: list[str]) -> None:
    burst = stats.burst
    if burst.size and burst.last is not None and _apart(at, burst.last) <= BURST_GAP_SECONDS:
        burst.size += 1
        burst.last = max(burst.last, at)
        burst.pending.append(whence)
    else:
        stats.burst = burst = Burst(size=1, start=at, last=at, pending=[whence])
    if burst.size == MIN_BURST:
        stats.bursts += 1
        stats.burst_failures += MIN_BURST
    elif burst.size > MIN_BURST:
        stats.burst_failures += 1
    if burst.size >= MIN_BURST:            # whose failures the bursts are: the advice says, and weighs it
        for playbook, whose in burst.pending:
            _count(stats.burst_playbooks, playbook)
            _count(stats.burst_sources, whose)
        burst.pending = []
    stats.largest_burst = max(stats.largest_burst, burst.size)


def _retried(stats: StepStats, after: str, delay_ms: float, worked: bool) -> None:
    """An attempt that retried a failure: did the retry work, after that category and that backoff?"""
    if after:
        _tally(stats.after, after, worked)
        _tally(stats.delays, bucket(delay_ms), worked)


def _seen(stats: StepStats | PlaybookStats | TargetStats, at: datetime) -> None:
    stats.since = at if stats.since is None else min(stats.since, at)
    stats.until = at if stats.until is None else max(stats.until, at)


def _count(counts: dict, key) -> None:  # type: ignore[no-untyped-def]
    if key in counts or len(counts) < MAX_KEYS:
        counts[key] = counts.get(key, 0) + 1


def _tally(tallies: dict, key, worked: bool) -> None:  # type: ignore[no-untyped-def]
    if key not in tallies:
        if len(tallies) >= MAX_KEYS:
            return
        tallies[key] = Tally()
    tallies[key].tries += 1
    tallies[key].worked += int(worked)


def _apart(a: datetime, b: datetime) -> float:
    return abs((a - b).total_seconds())
