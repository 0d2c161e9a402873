"""Engine metrics for the dashboard: runs, step durations and outcomes, retries, errors, gates, breakers.

A pure fold over run and breaker events. Per-run bookkeeping lives only while a run is
active; a finished run leaves aggregate counts (and a short memory of its playbook, so a
rollback started later is still counted under it). Everything here round-trips through
`msgspec.msgpack`, so the projector can snapshot it.
"""
from __future__ import annotations

import heapq
import math
from datetime import datetime, timezone
from typing import Any

import msgspec

from events.circuit import CircuitClosed, CircuitEvent, CircuitHalfOpened, CircuitOpened, CircuitReset
from events.run import (
    REOPENING_EVENTS, TERMINAL_EVENTS, MessageAbandoned, RunEvent, RunStarted, StepFailed, StepRetryScheduled,
    StepStarted, StepSucceeded,
)
from projections import run_list
from projections.run_list import RunSummary

DURATION_BUCKETS_MS = (10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)
ERROR_HOURS_KEPT = 7 * 24
RECENT_RUNS = 100          # finished runs per playbook the success rate looks at
ENDED_RUNS_KEPT = 1000     # finished runs remembered so a later rollback counts under its playbook
# Steps the dashboard's JSON names (it draws the 15 slowest): one 10,000-step playbook made every push of it 2 MB.
MOST_STEPS = 200
KEY_SEP = "\x1f"           # between playbook and step in a step key: neither name can hold it
# The engine stopped the attempt (or could not run it), not the step failing.
ENGINE_CATEGORIES = frozenset({"cancelled", "interrupted", "engine"})
UNSUCCESSFUL = frozenset({"failed", "rolled_back", "rollback_failed"})


class StepStats(msgspec.Struct, kw_only=True):
    count: int = 0                 # attempts timed (started by an executor, then succeeded or failed)
    sum_ms: float = 0.0
    buckets: list[int] = []        # per bucket of DURATION_BUCKETS_MS, not cumulative; above the last: only in count
    succeeded: int = 0
    failed: int = 0
    retries: int = 0


class PlaybookStats(msgspec.Struct, kw_only=True):
    runs: int = 0                  # started, dry runs included
    dry_runs: int = 0
    by_status: dict[str, int] = {}   # runs now in each status; finished runs stay in their last one
    outcomes: dict[str, int] = {}    # how real (not dry) runs first ended, all time
    recent: list[str] = []         # the last RECENT_RUNS first endings, oldest first
    completed_count: int = 0       # completed real runs, for the mean duration
    completed_sum_ms: float = 0.0


class TrackedRun(msgspec.Struct, kw_only=True):
    summary: RunSummary            # status, phase and waiting gates, as the run list folds them
    running: list[str] = []        # steps with an attempt started and not finished
    counted: bool = False          # its ending is in the aggregates (a later rollback does not count again)


class Metrics(msgspec.Struct, kw_only=True):
    last_seq: int = 0
    playbooks: dict[str, PlaybookStats] = {}
    steps: dict[str, StepStats] = {}                   # "playbook\x1fstep" -> stats
    retries_by_category: dict[str, int] = {}
    errors_by_hour: dict[str, dict[str, int]] = {}     # "2026-11-26T06:00Z" -> category -> failures
    circuits: dict[str, str] = {}                      # key -> closed | open | half_open
    circuit_openings: dict[str, int] = {}
    abandoned: dict[str, int] = {}                     # consumer -> messages it gave up on (MessageAbandoned)
    active: dict[str, TrackedRun] = {}
    ended: dict[str, TrackedRun] = {}                  # oldest first, at most ENDED_RUNS_KEPT

    @property
    def approvals_waiting(self) -> int:
        """Gates requested and not yet decided, in runs still going (a finished run's gates are moot)."""
        return sum(t.summary.gates_waiting for t in self.active.values())

    def apply(self, seq: int, event: RunEvent | CircuitEvent) -> bool:
        """Fold one event in; True if any figure changed. Events at or before `last_seq` are ignored."""
        if 0 < seq <= self.last_seq:
            return False   # seen already: redelivered, or replayed over a snapshot
        self.last_seq = max(self.last_seq, seq)
        if isinstance(event, CircuitEvent):
            return self._circuit(event)
        if not isinstance(event, RunEvent):
            return False
        changed = False
        if isinstance(event, MessageAbandoned):
            _add(self.abandoned, event.consumer, 1)
            changed = True
        if isinstance(event, StepFailed):
            changed = self._error(event)
        if isinstance(event, RunStarted):
            return self._started(event)
        tracked = self.active.get(event.run_id)
        if tracked is None and isinstance(event, REOPENING_EVENTS):
            tracked = self._reopen(event.run_id)
        if tracked is None:
            return changed
        return self._steps(tracked, event) | self._status(tracked, event) | changed

    # -- runs ---------------------------------------------------------------------------

    def _started(self, event: RunStarted) -> bool:
        if event.run_id in self.active or event.run_id in self.ended:
            return False
        runs: dict[str, RunSummary] = {}
        run_list.apply(runs, event)
        tracked = self.active[event.run_id] = TrackedRun(summary=runs[event.run_id])
        stats = self._playbook(tracked.summary.playbook)
        stats.runs += 1
        stats.dry_runs += int(event.dry_run)
        _add(stats.by_status, tracked.summary.status, 1)
        return True

    def _reopen(self, run_id: str) -> TrackedRun | None:
        """A finished run reopened (rolled back or retried by hand) is active again (its first ending stays counted)."""
        tracked = self.ended.pop(run_id, None)
        if tracked is not None:
            self.active[run_id] = tracked
        return tracked

    def _status(self, tracked: TrackedRun, event: RunEvent) -> bool:
        if not isinstance(event, run_list.LIST_EVENTS):
            return False          # only these move a run's status
        summary = tracked.summary
        before = (summary.status, summary.gates_waiting, summary.phase)
        run_list.apply({summary.run_id: summary}, event)
        if summary.status != before[0]:
            by_status = self._playbook(summary.playbook).by_status
            _add(by_status, before[0], -1)
            _add(by_status, summary.status, 1)
        if isinstance(event, TERMINAL_EVENTS):
            self._end(tracked, event)
            return True
        return (summary.status, summary.gates_waiting, summary.phase) != before

    def _end(self, tracked: TrackedRun, event: RunEvent) -> None:
        summary = tracked.summary
        if not tracked.counted and not summary.dry_run:
            stats = self._playbook(summary.playbook)
            _add(stats.outcomes, summary.status, 1)
            stats.recent = [*stats.recent, summary.status][-RECENT_RUNS:]
            if summary.status == "completed":
                stats.completed_count += 1
                stats.completed_sum_ms += max(0.0, (event.at - summary.started_at).total_seconds() * 1000)
        tracked.counted, tracked.running = True, []
        summary.gates_waiting = 0
        del self.active[summary.run_id]
        self.ended[summary.run_id] = tracked
        while len(self.ended) > ENDED_RUNS_KEPT:
            del self.ended[next(iter(self.ended))]

    def _playbook(self, name: str) -> PlaybookStats:
        stats = self.playbooks.get(name)
        if stats is None:
            stats = self.playbooks[name] = PlaybookStats()
        return stats

    # -- steps --------------------------------------------------------------------------

    def _steps(self, tracked: TrackedRun, event: RunEvent) -> bool:
        match event:
            case StepStarted(step_id=step_id):
                if step_id not in tracked.running:
                    tracked.running = [*tracked.running, step_id]
                return False
            case StepSucceeded(step_id=step_id) | StepFailed(step_id=step_id):
                timed = step_id in tracked.running
                tracked.running = [s for s in tracked.running if s != step_id]
                if isinstance(event, StepFailed) and event.category in ENGINE_CATEGORIES:
                    return False
                stats = self._step(tracked.summary.playbook, step_id)
                if isinstance(event, StepSucceeded):
                    stats.succeeded += 1
                else:
                    stats.failed += 1
                if timed:   # a gate's rejection or a `when` that cannot be evaluated fails a step nobody ran
                    _observe(stats, event.duration_ms)
                return True
            case StepRetryScheduled(step_id=step_id, category=category):
                self._step(tracked.summary.playbook, step_id).retries += 1
                _add(self.retries_by_category, category, 1)
                return True
        return False

    def _step(self, playbook: str, step_id: str) -> StepStats:
        key = f"{playbook}{KEY_SEP}{step_id}"
        stats = self.steps.get(key)
        if stats is None:
            stats = self.steps[key] = StepStats(buckets=[0] * len(DURATION_BUCKETS_MS))
        return stats

    def _error(self, event: StepFailed) -> bool:
        hour = _hour(event.at)
        if len(self.errors_by_hour) >= ERROR_HOURS_KEPT and hour not in self.errors_by_hour \
                and hour < min(self.errors_by_hour):
            return False   # older than every hour kept
        _add(self.errors_by_hour.setdefault(hour, {}), event.category, 1)
        while len(self.errors_by_hour) > ERROR_HOURS_KEPT:
            del self.errors_by_hour[min(self.errors_by_hour)]
        return True

    # -- breakers -------------------------------------------------------------------------

    def _circuit(self, event: CircuitEvent) -> bool:
        match event:
            case CircuitOpened():
                state = "open"
                _add(self.circuit_openings, event.key, 1)
            case CircuitHalfOpened():
                state = "half_open"
            case CircuitClosed() | CircuitReset():
                state = "closed"
            case _:
                if event.key in self.circuits:
                    return False
                state = "closed"   # calls through a breaker never opened: it is closed
        changed = self.circuits.get(event.key) != state or isinstance(event, CircuitOpened)
        self.circuits[event.key] = state
        return changed

    # -- the dashboard's view -------------------------------------------------------------

    def as_json(self, most_steps: int | None = MOST_STEPS) -> dict[str, Any]:
        """A JSON-able summary for the dashboard and the API: of the steps, the `most_steps` slowest on average
        (None: every one), and of the retried steps, the `most_steps` retried most.

        {
          "runs": {playbook: {status: n}},     runs now in each status (finished runs stay in their final one)
          "runs_by_status": {status: n},       the same over all playbooks
          "steps": [{"playbook", "step",
                     "count",                  attempts timed (an executor ran them)
                     "succeeded", "failed",    attempt outcomes; failures the engine caused (cancel,
                                               executor lost) are not counted
                     "success_rate",           succeeded / (succeeded + failed), or null
                     "mean_ms", "sum_ms",      of the timed attempts (mean null if none)
                     "retries",                retries scheduled
                     "buckets": [{"le_ms", "count"}]}],   cumulative, Prometheus style; the last
                                               has "le_ms": null (+Inf) and equals count
          "steps_left_out": n,                 steps not in "steps" (past `most_steps`)
          "retries": {"total": n, "by_category": {category: n},
                      "by_step": [{"playbook", "step", "retries"}]},
          "errors_over_time": [{"hour": "2026-11-26T06:00Z", "categories": {category: n}}],
                                               step failures per UTC hour, every category (the
                                               engine's own too), oldest first, the latest 7*24 hours
          "approvals_waiting": n,
          "circuits": {key: "closed" | "open" | "half_open"},
          "circuit_openings": {key: n},
          "abandoned_messages": {consumer: n}, messages each service gave up on (MessageAbandoned), all time
          "playbooks": [{"playbook",
                         "runs", "dry_runs",   started, all time
                         "completed", "failed", "cancelled",   how real runs first ended, all time;
                                               failed includes rolled_back and rollback_failed
                         "success_rate",       completed / (completed + failed) over the last
                                               RECENT_RUNS real runs that ended, cancelled left out; or null
                         "mean_duration_ms"}], of completed real runs, or null
        }
        Lists are sorted by playbook, then step.
        """
        runs_by_status: dict[str, int] = {}
        for stats in self.playbooks.values():
            for status, n in stats.by_status.items():
                _add(runs_by_status, status, n)
        chosen = self.steps.items() if most_steps is None or len(self.steps) <= most_steps else heapq.nlargest(
            most_steps, self.steps.items(), key=lambda item: item[1].sum_ms / item[1].count if item[1].count else -1)
        steps = [_step_json(key, stats) for key, stats in sorted(chosen)]
        retried = [(key, stats.retries) for key, stats in self.steps.items() if stats.retries]
        if most_steps is not None and len(retried) > most_steps:
            retried = heapq.nlargest(most_steps, retried, key=lambda item: item[1])
        return {
            "runs": {name: dict(stats.by_status) for name, stats in sorted(self.playbooks.items())},
            "runs_by_status": runs_by_status,
            "steps": steps,
            "steps_left_out": len(self.steps) - len(steps),
            "retries": {
                "total": sum(self.retries_by_category.values()),
                "by_category": dict(self.retries_by_category),
                "by_step": [{"playbook": key.partition(KEY_SEP)[0], "step": key.partition(KEY_SEP)[2], "retries": n}
                            for key, n in sorted(retried)],
            },
            "errors_over_time": [{"hour": hour, "categories": dict(self.errors_by_hour[hour])}
                                 for hour in sorted(self.errors_by_hour)],
            "approvals_waiting": self.approvals_waiting,
            "circuits": dict(self.circuits),
            "circuit_openings": dict(self.circuit_openings),
            "abandoned_messages": dict(self.abandoned),
            "playbooks": [_playbook_json(name, stats) for name, stats in sorted(self.playbooks.items())],
        }


def _step_json(key: str, stats: StepStats) -> dict[str, Any]:
    playbook, _, step = key.partition(KEY_SEP)
    cumulative, buckets = 0, list[dict[str, int | None]]()
    for le, n in zip(DURATION_BUCKETS_MS, stats.buckets):
        cumulative += n
        buckets.append({"le_ms": le, "count": cumulative})
    buckets.append({"le_ms": None, "count": stats.count})
    return {
        "playbook": playbook, "step": step, "count": stats.count,
        "succeeded": stats.succeeded, "failed": stats.failed,
        "success_rate": _rate(stats.succeeded, stats.succeeded + stats.failed),
        "mean_ms": round(stats.sum_ms / stats.count, 3) if stats.count else None,
        "sum_ms": round(stats.sum_ms, 3), "retries": stats.retries, "buckets": buckets,
    }


def _playbook_json(name: str, stats: PlaybookStats) -> dict[str, Any]:
    recent_completed = stats.recent.count("completed")
    recent_failed = sum(1 for outcome in stats.recent if outcome in UNSUCCESSFUL)
    return {
        "playbook": name, "runs": stats.runs, "dry_runs": stats.dry_runs,
        "completed": stats.outcomes.get("completed", 0),
        "failed": sum(stats.outcomes.get(outcome, 0) for outcome in UNSUCCESSFUL),
        "cancelled": stats.outcomes.get("cancelled", 0),
        "success_rate": _rate(recent_completed, recent_completed + recent_failed),
        "mean_duration_ms": (round(stats.completed_sum_ms / stats.completed_count, 3)
                             if stats.completed_count else None),
    }


def _observe(stats: StepStats, duration_ms: Any) -> None:
    ms = float(duration_ms) if isinstance(duration_ms, (int, float)) and math.isfinite(duration_ms) else 0.0
    ms = max(ms, 0.0)
    stats.count += 1
    stats.sum_ms += ms
    for i, le in enumerate(DURATION_BUCKETS_MS):
        if ms <= le:
            stats.buckets[i] += 1
            break


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _add(counts: dict[str, int], key: str, n: int) -> None:
    """Add to a count, dropping it at zero so statuses a playbook left do not linger."""
    value = counts.get(key, 0) + n
    if value:
        counts[key] = value
    else:
        counts.pop(key, None)


def _hour(at: datetime) -> str:
    utc = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:00Z")
