"""A run's detail view and timeline, from events the real decider writes."""
from __future__ import annotations

import json

from events.commands import CancelRun, PauseRun, ResumeRun, RollbackRun
from events.run import (
    ApprovalDeadlinePassed, RunEvent, StepFailed, StepNotRetried, StepRetryScheduled, StepScheduled,
)
from projections.run_view import run_view, timeline
from services.domain.run.commands import ExpireGate, AnswerGate
from services.domain.run.commands import RecordRetryVerdict
from services.domain.run.state import Run
from tests.helpers import R, Scenario, at, noop, started

ORIGINAL_KEYS = {"run_id", "status", "playbook", "environment", "actor", "parameters", "started_at", "finished_at",
                 "paused_by", "cancel_requested_by", "failure", "version", "steps"}
ORIGINAL_STEP_KEYS = {"id", "status", "attempt", "executor", "duration_ms", "error", "category", "reason", "outputs",
                      "gate", "approvals", "gate_decided_by", "rollback", "rollback_error"}


class Recorded(Scenario):
    """A scenario that keeps every event with its sequence number, as the stream would."""

    def __init__(self, *events: RunEvent) -> None:
        self.envelopes: list[tuple[int, RunEvent]] = []
        super().__init__(*events)

    def given(self, *events: RunEvent) -> Recorded:
        for event in events:
            super().given(event)
            self.envelopes.append((self.seq, event))
        return self


def gated(step_id: str = "deploy", **gate) -> dict:
    return noop(step_id, approval_gate={"message": "Deploy it?", "required_approvers": ["ops-team", "tech-lead"],
                                        **gate})


def undo(step_id: str, **extra) -> dict:
    return noop(step_id, rollback=[{"action": "shell", "args": {"command": f"undo {step_id}"}}], **extra)


def steps_by_id(view: dict) -> dict[str, dict]:
    return {s["id"]: s for s in view["steps"]}


def test_every_key_the_cli_reads_is_still_there_and_it_dumps_as_json() -> None:
    s = Recorded(started(R, [noop("a")]))
    s.start()
    view = run_view(s.run)
    assert ORIGINAL_KEYS <= view.keys() and ORIGINAL_STEP_KEYS <= view["steps"][0].keys()
    assert json.loads(json.dumps(view, default=str))["steps"][0]["status"] == "scheduled"


def test_a_run_not_started_has_an_empty_view() -> None:
    view = run_view(Run(id="nope"))
    assert (view["playbook"], view["steps"], view["waves"], view["dry_run"], view["event_count"]) == (
        None, [], [], False, 0)


def test_steps_show_their_place_in_the_plan() -> None:
    s = Recorded(started(R, [noop("prep", name="Prepare hosts"), noop("x", parallel_group="g"),
                             noop("y", parallel_group="g"), noop("after"), noop("audit", depends_on=[])],
                         dry_run=False))
    s.start()
    view = run_view(s.run)
    assert view["waves"] == [["prep", "audit"], ["x", "y"], ["after"]]
    steps = steps_by_id(view)
    assert [(i, st["wave"], st["depends_on"], st["parallel_group"]) for i, st in steps.items()] == [
        ("prep", 0, [], None), ("x", 1, ["prep"], "g"), ("y", 1, ["prep"], "g"), ("after", 2, ["x", "y"], None),
        ("audit", 0, [], None)]
    assert (steps["prep"]["name"], steps["prep"]["action"], steps["x"]["name"]) == ("Prepare hosts", "noop", None)
    assert (view["phase"], view["dry_run"], view["event_count"], view["rollback_waves"]) == ("forward", False, 3, [])
    assert steps["prep"]["approval_gate"] is None and steps["prep"]["rollback_wave"] is None


def test_a_gated_step_shows_its_gate_deadline_and_approvals() -> None:
    s = Recorded(started(R, [noop("build"), gated(timeout_seconds=60)], actor="starter"))
    s.start()
    s.run_step("build")
    s.when(AnswerGate(step_id="deploy", actor="bob", groups=("ops-team",), approve=True, comment="looks fine"), t=20)
    view = run_view(s.run)
    gate = steps_by_id(view)["deploy"]["approval_gate"]
    assert gate == {
        "message": "Deploy it?", "required_approvers": ["ops-team", "tech-lead"], "min_approvals": 2,
        "timeout_seconds": 60, "auto_approve_after_timeout": False, "allow_self_approval": False,
        "status": "requested", "deadline": at(70).isoformat(), "deadline_passed": False,
        "approvals": [{"actor": "bob", "groups": ["ops-team"], "comment": "looks fine", "at": at(20).isoformat()}],
        "decided_by": [], "rejection_comment": None}
    assert view["status"] == "waiting_approval" and view["gates_waiting"] == 1
    s.when(AnswerGate(step_id="deploy", actor="carol", groups=("tech-lead",), approve=True), t=30)
    gate = steps_by_id(run_view(s.run))["deploy"]["approval_gate"]
    assert (gate["status"], gate["decided_by"]) == ("granted", ["bob", "carol"])


def test_a_gate_not_yet_reached_says_so() -> None:
    s = Recorded(started(R, [noop("build"), gated(min_approvals=1)]))
    s.start()
    gate = steps_by_id(run_view(s.run))["deploy"]["approval_gate"]
    assert (gate["status"], gate["min_approvals"], gate["deadline"]) == ("not_requested", 1, None)


def test_a_rollback_shows_its_phase_and_each_steps_rollback_wave() -> None:
    s = Recorded(started(R, [undo("a", parallel_group="g"), undo("b", parallel_group="g"), undo("c")]))
    s.start()
    s.begin("a"), s.begin("b")
    s.succeed("b"), s.succeed("a")
    s.run_step("c")
    s.when(RollbackRun(run_id=R, actor="ops"), t=40)
    view = run_view(s.run)
    assert (view["phase"], view["status"], view["rollback_waves"]) == ("rollback", "rolling_back", [["c"], ["a", "b"]])
    assert {i: st["rollback_wave"] for i, st in steps_by_id(view).items()} == {"a": 1, "b": 1, "c": 0}
    assert view["waves"] == [["a", "b"], ["c"]]


def test_the_timeline_tells_attempts_retries_and_waits_in_order() -> None:
    s = Recorded(started(R, [noop("fetch", retry={"max_attempts": 3}), gated(required_approvers=["ops-team"])],
                         actor="starter"))
    s.start()
    s.begin("fetch")
    s.fail("fetch", "connection refused", category="network")
    s.when(RecordRetryVerdict(step_id="fetch", attempt=1, retry=True, category="network", reason="network error",
                       delay_seconds=4), t=11)
    fetch = steps_by_id(run_view(s.run))["fetch"]
    assert (fetch["status"], fetch["retry"], fetch["retry_due"]) == ("failed", "waiting", at(15).isoformat())
    s.when(PauseRun(run_id=R, actor="bob", reason="lunch"), t=12)
    s.when(ResumeRun(run_id=R, actor="bob"), t=13)
    s.given(StepScheduled(run_id=R, at=at(15), step_id="fetch", attempt=2, reason="retry after network"))  # the timer
    s.run_step("fetch")
    entries = timeline(s.envelopes)
    assert [e["seq"] for e in entries] == list(range(1, 12))
    assert [(e["kind"], e["step_id"], e["attempt"], e["detail"], e["actor"]) for e in entries] == [
        ("RunStarted", None, None, "started playbook test", "starter"),
        ("StepScheduled", "fetch", 1, "attempt 1 waiting for an executor", None),
        ("StepStarted", "fetch", 1, "attempt 1 started on ex1", None),
        ("StepFailed", "fetch", 1, "failed (network) after 1 ms: connection refused", None),
        ("StepRetryScheduled", "fetch", 2, "retry 2 in 4.0 s after network error", None),
        ("RunPaused", None, None, "paused by bob: lunch", "bob"),
        ("RunResumed", None, None, "resumed by bob", "bob"),
        ("StepScheduled", "fetch", 2, "attempt 2 waiting for an executor (retry after network)", None),
        ("StepStarted", "fetch", 2, "attempt 2 started on ex1", None),
        ("StepSucceeded", "fetch", 2, "succeeded in 1 ms", None),
        ("ApprovalRequested", "deploy", None, "waiting for approval by ops-team", None)]
    assert steps_by_id(run_view(s.run))["fetch"]["retry_due"] is None   # done waiting
    first = entries[0]
    assert first["at"] == at(0).isoformat() and first["seq"] == 1


def test_the_timeline_of_a_gate_that_times_out() -> None:
    s = Recorded(started(R, [gated(timeout_seconds=30, min_approvals=2)]))
    s.start()
    s.given(ApprovalDeadlinePassed(run_id=R, at=at(40), step_id="deploy"))
    s.when(ExpireGate(step_id="deploy"), t=40)
    entries = timeline(s.envelopes)
    # The timer's own message is left out: what it caused shows.
    assert "ApprovalDeadlinePassed" not in [e["kind"] for e in entries]
    until = at(40).isoformat()
    assert [(e["kind"], e["detail"], e["actor"]) for e in entries[-4:]] == [
        ("ApprovalRequested", f"waiting for approval by ops-team, tech-lead (2 approvals) until {until}", None),
        ("ApprovalTimedOut", "approval timed out", "system"),
        ("StepFailed", "failed (timeout) after 0 ms: approval timed out after 30s", None),
        ("RunFailed", "run failed after 40.0 s: step deploy failed: approval timed out after 30s", None)]


def test_the_timeline_of_retries_given_up_and_rollbacks() -> None:
    envelopes = [
        (3, StepRetryScheduled(run_id=R, at=at(5), step_id="a", attempt=3, delay_seconds=0.25, due=at(5.25),
                               category="timeout", reason="timed out")),
        (4, StepNotRetried(run_id=R, at=at(9), step_id="a", attempt=3, category="permanent",
                           reason="attempts exhausted (3 of 3)", exhausted=True)),
        (5, StepFailed(run_id=R, at=at(9), step_id="b", attempt=1, error="executor ex1 stopped while running the step",
                       category="interrupted")),
    ]
    assert [e["detail"] for e in timeline(envelopes)] == [
        "retry 3 in 0.2 s after timeout error",
        "not retried after permanent error: attempts exhausted (3 of 3)",
        "interrupted: executor ex1 stopped while running the step; it runs again"]
    s = Recorded(started(R, [undo("a"), noop("b")], on_failure="rollback"))
    s.start()
    s.run_step("a")
    s.begin("b")
    s.fail("b", "503")
    details = [e["detail"] for e in timeline(s.envelopes)][-2:]
    assert details == ["rollback by system: a (step b failed: 503)", "rollback attempt 1 waiting for an executor"]


def test_the_view_says_who_paused_resumed_and_cancelled_and_why() -> None:
    s = Recorded(started(R, [noop("a"), noop("b")]))
    s.start()
    s.when(PauseRun(run_id=R, actor="ops", reason="change freeze"))
    view = run_view(s.run)
    assert (view["paused_by"], view["pause_reason"], view["resumed_by"]) == ("ops", "change freeze", None)
    s.when(ResumeRun(run_id=R, actor="lead"))
    view = run_view(s.run)
    assert (view["paused_by"], view["pause_reason"], view["resumed_by"]) == (None, None, "lead")
    s.when(CancelRun(run_id=R, actor="lead", reason="wrong build"))
    view = run_view(s.run)
    assert (view["cancel_requested_by"], view["cancel_reason"], view["stopped_by_engine"]) == (
        "lead", "wrong build", False)


def test_a_requested_gate_shows_its_message_as_asked() -> None:
    s = Recorded(started(R, [noop("build"), noop("deploy", approval_gate={
        "message": "Deploy ${version}?", "required_approvers": ["bob"]})],
        parameters=[{"name": "version", "default": "2.1"}]))
    gate = steps_by_id(run_view(s.run))["deploy"]["approval_gate"]
    assert gate["message"] == "Deploy ${version}?"          # not asked yet: as written
    s.start()
    s.run_step("build")
    gate = steps_by_id(run_view(s.run))["deploy"]["approval_gate"]
    assert gate["message"] == "Deploy 2.1?"
