"""Engine metrics folded from run and breaker events, as the dashboard reads them."""
from __future__ import annotations

import functools
from datetime import timedelta, timezone

import msgspec

from events.circuit import (
    CircuitCallFailed, CircuitCallSucceeded, CircuitClosed, CircuitHalfOpened, CircuitOpened, CircuitReset,
)
from events.run import (
    ApprovalGranted, ApprovalRejected, ApprovalRequested, RollbackCompleted, RollbackStarted, RunCancelled,
    RunCancelRequested, RunCompleted, RunFailed, RunPaused, RunResumed, StepFailed, StepRetryScheduled,
    StepScheduled, StepStarted, StepSucceeded,
)
from projections.metrics import DURATION_BUCKETS_MS, ENDED_RUNS_KEPT, ERROR_HOURS_KEPT, RECENT_RUNS, Metrics
from tests.helpers import at, noop, started


class Feed:
    """Metrics fed events with the sequence numbers the stream would give them."""

    def __init__(self, metrics: Metrics | None = None, seq: int = 0) -> None:
        self.metrics = metrics or Metrics()
        self.seq = seq

    def __call__(self, *events) -> list[bool]:
        changed = []
        for event in events:
            self.seq += 1
            changed.append(self.metrics.apply(self.seq, event))
        return changed

    @property
    def json(self) -> dict:
        return self.metrics.as_json()


@functools.cache
def _started(playbook: str, dry_run: bool):
    return started("template", [noop("build"), noop("ship")], name=playbook, dry_run=dry_run)


def begin(run_id: str, playbook: str = "deploy", t: float = 0, dry_run: bool = False):
    return msgspec.structs.replace(_started(playbook, dry_run), run_id=run_id, at=at(t))


def ran(run_id: str, step_id: str, ms: float, t: float = 1, attempt: int = 1, error: str = "",
        category: str = "unknown"):
    """An attempt an executor took and finished."""
    start = StepStarted(run_id=run_id, at=at(t), step_id=step_id, attempt=attempt, executor="ex1")
    if error:
        return [start, StepFailed(run_id=run_id, at=at(t), step_id=step_id, attempt=attempt, error=error,
                                  category=category, duration_ms=ms)]
    return [start, StepSucceeded(run_id=run_id, at=at(t), step_id=step_id, attempt=attempt, duration_ms=ms)]


def step_json(feed: Feed, playbook: str, step: str) -> dict:
    return next(s for s in feed.json["steps"] if (s["playbook"], s["step"]) == (playbook, step))


def playbook_json(feed: Feed, playbook: str) -> dict:
    return next(p for p in feed.json["playbooks"] if p["playbook"] == playbook)


def test_runs_by_status_follow_the_run_list_through_pause_gates_and_the_end() -> None:
    feed = Feed()
    feed(begin("r1"), begin("r2", playbook="backup"))
    assert feed.json["runs"] == {"backup": {"running": 1}, "deploy": {"running": 1}}
    feed(RunPaused(run_id="r1", at=at(1), actor="bob"))
    assert feed.json["runs"]["deploy"] == {"paused": 1}
    feed(RunResumed(run_id="r1", at=at(2), actor="bob"),
         ApprovalRequested(run_id="r1", at=at(3), step_id="ship", message="?", required_approvers=["ops"],
                           min_approvals=1))
    assert feed.json["runs"]["deploy"] == {"waiting_approval": 1}
    assert feed.json["approvals_waiting"] == 1
    feed(ApprovalGranted(run_id="r1", at=at(4), step_id="ship", approvers=["carol"], actor="carol"))
    assert feed.json["runs"]["deploy"] == {"running": 1}
    assert feed.json["approvals_waiting"] == 0
    feed(RunCompleted(run_id="r1", at=at(5)), RunCancelRequested(run_id="r2", at=at(5), actor="erin"))
    assert feed.json["runs"] == {"backup": {"cancelling": 1}, "deploy": {"completed": 1}}
    feed(RunCancelled(run_id="r2", at=at(6)))
    assert feed.json["runs_by_status"] == {"completed": 1, "cancelled": 1}


def test_step_durations_outcomes_and_cumulative_buckets() -> None:
    feed = Feed()
    feed(begin("r1"), *ran("r1", "build", 5), *ran("r1", "ship", 120, error="connection refused", category="network"),
         StepRetryScheduled(run_id="r1", at=at(2), step_id="ship", attempt=2, delay_seconds=4, due=at(6),
                            category="network", reason="network error"),
         *ran("r1", "ship", 10, attempt=2), begin("r2"), *ran("r2", "build", 400_000))
    build, ship = step_json(feed, "deploy", "build"), step_json(feed, "deploy", "ship")
    assert (ship["count"], ship["succeeded"], ship["failed"], ship["success_rate"]) == (2, 1, 1, 0.5)
    assert (ship["sum_ms"], ship["mean_ms"], ship["retries"]) == (130, 65, 1)
    assert [b["le_ms"] for b in ship["buckets"]] == [*DURATION_BUCKETS_MS, None]
    assert [b["count"] for b in ship["buckets"]] == [1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]   # 10 ms is in le=10
    # 400 s is above the last bound: only +Inf (the count) holds it.
    assert [b["count"] for b in build["buckets"]] == [1] * 12 + [2]
    assert (build["count"], build["success_rate"], build["mean_ms"]) == (2, 1.0, 200_002.5)
    stored = feed.metrics.steps["deploy\x1fship"]
    assert stored.buckets == [1, 0, 0, 1] + [0] * 8


def test_a_failure_no_executor_ran_counts_but_is_not_timed() -> None:
    feed = Feed()
    feed(begin("r1"),
         ApprovalRequested(run_id="r1", at=at(1), step_id="ship", message="?", required_approvers=["ops"],
                           min_approvals=1),
         ApprovalRejected(run_id="r1", at=at(2), step_id="ship", actor="bob"),
         StepFailed(run_id="r1", at=at(2), step_id="ship", attempt=1, error="approval rejected by bob",
                    category="authorization"))
    ship = step_json(feed, "deploy", "ship")
    assert (ship["failed"], ship["count"], ship["mean_ms"], ship["success_rate"]) == (1, 0, None, 0.0)


def test_failures_the_engine_caused_are_not_the_steps() -> None:
    feed = Feed()
    feed(begin("r1"), *ran("r1", "build", 30, error="executor ex1 stopped", category="interrupted"),
         *ran("r1", "build", 40, attempt=2), *ran("r1", "ship", 50, error="killed by cancel", category="cancelled"))
    build = step_json(feed, "deploy", "build")
    assert (build["succeeded"], build["failed"], build["count"], build["sum_ms"]) == (1, 0, 1, 40)
    assert [s["step"] for s in feed.json["steps"]] == ["build"]   # ship only ever stopped by the engine
    assert feed.json["errors_over_time"] == [{"hour": "2026-01-01T12:00Z",
                                              "categories": {"interrupted": 1, "cancelled": 1}}]


def test_retries_by_step_and_by_category() -> None:
    feed = Feed()

    def retry(step_id: str, category: str, attempt: int = 2):
        return StepRetryScheduled(run_id="r1", at=at(3), step_id=step_id, attempt=attempt, delay_seconds=1,
                                  due=at(4), category=category, reason="")
    feed(begin("r1"), retry("build", "network"), retry("build", "network", 3), retry("ship", "timeout"))
    assert feed.json["retries"] == {
        "total": 3, "by_category": {"network": 2, "timeout": 1},
        "by_step": [{"playbook": "deploy", "step": "build", "retries": 2},
                    {"playbook": "deploy", "step": "ship", "retries": 1}]}


def test_playbook_success_rate_and_mean_duration_of_completed_runs() -> None:
    feed = Feed()
    feed(begin("ok1"), RunCompleted(run_id="ok1", at=at(60)),
         begin("ok2", t=100), RunCompleted(run_id="ok2", at=at(220)),
         begin("bad", t=300), RunFailed(run_id="bad", at=at(301), reason="step ship failed"),
         begin("stop", t=400), RunCancelled(run_id="stop", at=at(401)),
         begin("dry", t=500, dry_run=True), RunCompleted(run_id="dry", at=at(500)))
    assert playbook_json(feed, "deploy") == {
        "playbook": "deploy", "runs": 5, "dry_runs": 1, "completed": 2, "failed": 1, "cancelled": 1,
        "success_rate": 0.6667, "mean_duration_ms": 90_000.0}
    assert feed.json["runs"]["deploy"] == {"completed": 3, "failed": 1, "cancelled": 1}   # the dry run is a run too


def test_the_success_rate_looks_at_the_latest_runs_only() -> None:
    feed = Feed()
    for i in range(RECENT_RUNS + 50):
        end = RunFailed(run_id=f"r{i}", at=at(1), reason="x") if i < RECENT_RUNS else RunCompleted(run_id=f"r{i}",
                                                                                                   at=at(1))
        feed(begin(f"r{i}"), end)
    deploy = playbook_json(feed, "deploy")
    assert (deploy["completed"], deploy["failed"], deploy["success_rate"]) == (50, RECENT_RUNS, 0.5)
    assert len(feed.metrics.playbooks["deploy"].recent) == RECENT_RUNS


def test_finished_runs_leave_only_aggregates() -> None:
    feed = Feed()
    runs = ENDED_RUNS_KEPT + 5
    for i in range(runs):
        feed(begin(f"r{i}"), StepScheduled(run_id=f"r{i}", at=at(1), step_id="build", attempt=1),
             *ran(f"r{i}", "build", 20), RunCompleted(run_id=f"r{i}", at=at(2)))
    assert feed.metrics.active == {}
    assert len(feed.metrics.ended) == ENDED_RUNS_KEPT and "r0" not in feed.metrics.ended
    assert all(t.running == [] for t in feed.metrics.ended.values())
    assert feed.json["runs"] == {"deploy": {"completed": runs}}
    assert step_json(feed, "deploy", "build")["count"] == runs
    # A run forgotten long ago: its late events change nothing.
    assert feed(RollbackStarted(run_id="r0", at=at(9), waves=[["build"]], reason="late")) == [False]


def test_a_finished_run_rolled_back_by_hand_moves_status_but_counts_its_outcome_once() -> None:
    feed = Feed()
    feed(begin("r1"), *ran("r1", "build", 10), RunFailed(run_id="r1", at=at(5), reason="ship failed"))
    assert "r1" not in feed.metrics.active
    assert feed(RollbackStarted(run_id="r1", at=at(9), waves=[["build"]], reason="undo", actor="ops")) == [True]
    assert feed.json["runs"]["deploy"] == {"rolling_back": 1}
    feed(RollbackCompleted(run_id="r1", at=at(12)))
    assert feed.json["runs"]["deploy"] == {"rolled_back": 1}
    assert playbook_json(feed, "deploy")["failed"] == 1
    assert feed.metrics.playbooks["deploy"].recent == ["failed"]
    assert feed.metrics.active == {}


def test_a_run_that_ends_with_a_gate_open_no_longer_waits_for_approval() -> None:
    feed = Feed()
    feed(begin("r1"), begin("r2"),
         ApprovalRequested(run_id="r1", at=at(1), step_id="ship", message="?", required_approvers=[], min_approvals=1),
         ApprovalRequested(run_id="r2", at=at(1), step_id="ship", message="?", required_approvers=[], min_approvals=1))
    assert feed.json["approvals_waiting"] == 2
    feed(RunCancelRequested(run_id="r1", at=at(2), actor="bob"), RunCancelled(run_id="r1", at=at(2)))
    assert feed.json["approvals_waiting"] == 1
    assert feed.json["runs"]["deploy"] == {"cancelled": 1, "waiting_approval": 1}


def test_errors_are_counted_per_utc_hour_for_the_latest_week() -> None:
    feed = Feed()
    plus_two = timezone(timedelta(hours=2))
    feed(StepFailed(run_id="x", at=at(0).astimezone(plus_two), step_id="a", attempt=1, error="e", category="network"),
         StepFailed(run_id="x", at=at(3599), step_id="a", attempt=1, error="e", category="network"),
         StepFailed(run_id="x", at=at(3600), step_id="a", attempt=1, error="e", category="timeout"))
    assert feed.json["errors_over_time"] == [{"hour": "2026-01-01T12:00Z", "categories": {"network": 2}},
                                             {"hour": "2026-01-01T13:00Z", "categories": {"timeout": 1}}]
    for hour in range(200):
        feed(StepFailed(run_id="x", at=at(hour * 3600), step_id="a", attempt=1, error="e", category="resource"))
    hours = [h["hour"] for h in feed.json["errors_over_time"]]
    assert len(hours) == ERROR_HOURS_KEPT and hours == sorted(hours)
    assert (hours[0], hours[-1]) == ((at(32 * 3600)).strftime("%Y-%m-%dT%H:00Z"), "2026-01-09T19:00Z")
    assert feed(StepFailed(run_id="x", at=at(0), step_id="a", attempt=1, error="e")) == [False]   # older than the week
    assert len(feed.metrics.errors_by_hour) == ERROR_HOURS_KEPT


def test_circuit_states_and_openings() -> None:
    feed = Feed()
    changed = feed(CircuitCallFailed(key="db", at=at(0), run_id="r1", step_id="a", error="503"),
                   CircuitCallFailed(key="db", at=at(1), run_id="r1", step_id="a", error="503"),
                   CircuitOpened(key="db", at=at(2), reason="2 failures", until=at(32)),
                   CircuitHalfOpened(key="db", at=at(32)),
                   CircuitOpened(key="db", at=at(33), reason="trial failed", until=at(63)),
                   CircuitCallSucceeded(key="api", at=at(40), run_id="r1", step_id="b"))
    assert changed == [True, False, True, True, True, True]
    assert feed.json["circuits"] == {"db": "open", "api": "closed"}
    assert feed.json["circuit_openings"] == {"db": 2}
    feed(CircuitReset(key="db", at=at(50), actor="dave"), CircuitOpened(key="api", at=at(51), reason="x", until=at(60)),
         CircuitHalfOpened(key="api", at=at(60)), CircuitClosed(key="api", at=at(61), reason="trial succeeded"))
    assert feed.json["circuits"] == {"db": "closed", "api": "closed"}
    assert feed.json["circuit_openings"] == {"db": 2, "api": 1}


def test_apply_says_whether_anything_changed() -> None:
    feed = Feed()
    assert feed(begin("r1")) == [True]
    assert feed(begin("r1")) == [False]                                            # started twice: the first holds
    assert feed(StepScheduled(run_id="r1", at=at(1), step_id="build", attempt=1)) == [False]
    assert feed(RunCompleted(run_id="nobody", at=at(1))) == [False]               # a run never seen
    assert feed.metrics.apply(1, RunPaused(run_id="r1", at=at(2), actor="bob")) is False   # seen already
    assert feed.json["runs"]["deploy"] == {"running": 1}
    assert feed(RunPaused(run_id="r1", at=at(2), actor="bob"), RunPaused(run_id="r1", at=at(2), actor="bob")) == [True,
                                                                                                                  False]


def test_metrics_round_trip_through_msgpack_mid_run_and_go_on_the_same() -> None:
    def history(part: int) -> list:
        first = [begin("r1"), *ran("r1", "build", 75), begin("r2", playbook="backup"),
                 ApprovalRequested(run_id="r2", at=at(2), step_id="ship", message="?", required_approvers=[],
                                   min_approvals=1),
                 StepFailed(run_id="r1", at=at(3), step_id="ship", attempt=1, error="boom", category="network"),
                 CircuitOpened(key="db", at=at(3), reason="x", until=at(30))]
        rest = [StepRetryScheduled(run_id="r1", at=at(4), step_id="ship", attempt=2, delay_seconds=1, due=at(5),
                                   category="network", reason=""),
                *ran("r1", "ship", 900, attempt=2), RunCompleted(run_id="r1", at=at(9)),
                ApprovalGranted(run_id="r2", at=at(9), step_id="ship", approvers=["x"], actor="x")]
        return first if part == 1 else rest

    whole = Feed()
    whole(*history(1), *history(2))
    half = Feed()
    half(*history(1))
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(half.metrics), type=Metrics)
    assert restored == half.metrics
    resumed = Feed(restored, seq=half.seq)
    resumed(*history(2))
    assert resumed.metrics == whole.metrics
    assert resumed.json == whole.json
    assert msgspec.json.decode(msgspec.json.encode(whole.json)) == whole.json   # JSON-able as it is


def test_the_json_names_the_slowest_steps_and_the_most_retried_up_to_a_bound_and_counts_the_rest() -> None:
    feed = Feed()
    feed(begin("r1", playbook="wide"))
    for n in range(300):
        feed(*ran("r1", f"s{n:03}", ms=float(n)))
    feed(StepRetryScheduled(run_id="r1", at=at(2), step_id="s000", attempt=2, delay_seconds=1, due=at(3),
                            category="temporary", reason="retry after a temporary error"))
    figures = feed.metrics.as_json(most_steps=100)
    assert [s["step"] for s in figures["steps"]] == [f"s{n:03}" for n in range(200, 300)]   # the slowest, in order
    assert figures["steps_left_out"] == 200
    assert figures["retries"]["by_step"] == [{"playbook": "wide", "step": "s000", "retries": 1}]   # fast, yet named
    assert len(feed.metrics.as_json(most_steps=None)["steps"]) == 300


def test_messages_a_service_gave_up_on_are_counted_by_consumer_kept_in_a_snapshot_and_exported() -> None:
    from events.run import MessageAbandoned
    from prometheus_client import CollectorRegistry, generate_latest
    from ui.web.prometheus import gates_and_circuits

    def gave_up(consumer: str) -> MessageAbandoned:
        return MessageAbandoned(run_id="r1", at=at(2), consumer=consumer, seq=2, subject="pb.run.r1.StepScheduled",
                                deliveries=10, error="KeyError: 'x'", step_id="build", attempt=1)
    feed = Feed()
    feed(begin("r1"), StepScheduled(run_id="r1", at=at(1), step_id="build", attempt=1))
    assert feed(gave_up("executor"), gave_up("executor"), gave_up("advancer")) == [True] * 3
    feed(StepFailed(run_id="r1", at=at(3), step_id="build", attempt=1, error="the engine gave up", category="engine"))
    assert feed.json["abandoned_messages"] == {"executor": 2, "advancer": 1}
    metrics = msgspec.msgpack.decode(msgspec.msgpack.encode(feed.metrics), type=Metrics)   # a snapshot keeps them
    assert metrics.abandoned == {"executor": 2, "advancer": 1}

    class Families:
        def collect(self):
            return gates_and_circuits(metrics)
    registry = CollectorRegistry()
    registry.register(Families())
    text = generate_latest(registry).decode()
    assert 'playbook_messages_abandoned_total{consumer="executor"} 2.0' in text
