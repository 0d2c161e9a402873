"""Approval gates and rollback in the decider, as scenarios."""
from __future__ import annotations

import msgspec
import pytest

from events.commands import CancelRun, PauseRun, ResumeRun, RetryRun, RollbackRun
from events.run import ApprovalDeadlinePassed, ApprovalRejected
from services.domain.run.commands import Advance, AnswerGate, ExpireGate, Retry
from services.domain.run.gates import Refused
from services.errors import CommandRejected
from tests.helpers import R, Scenario, at, kinds, noop, started

GROUPS = {"alice": ("ops-team",), "bob": ("ops-team", "tech-lead"), "carol": ("tech-lead",), "dave": ()}


def gated(step_id: str = "deploy", **gate) -> dict:
    return noop(step_id, approval_gate={"message": "Deploy it?", "required_approvers": ["ops-team", "tech-lead"],
                                        **gate})


def approve(who: str, step: str = "deploy", comment: str = "") -> AnswerGate:
    return AnswerGate(step_id=step, actor=who, groups=GROUPS[who], approve=True, comment=comment)


def reject(who: str, step: str = "deploy") -> AnswerGate:
    return AnswerGate(step_id=step, actor=who, groups=GROUPS[who], approve=False, comment="not today")


def gate_scenario(**gate) -> Scenario:
    s = Scenario(started(R, [noop("build"), gated(**gate), noop("verify")], actor="starter",
                         parameters=[{"name": "service", "default": "checkout"}]))
    s.start()
    s.run_step("build")
    return s


def test_a_gated_step_waits_for_approval_with_the_message_interpolated() -> None:
    s = Scenario(started(R, [noop("build"), gated(timeout_seconds=60, message="Deploy ${service}?")], actor="starter",
                         parameters=[{"name": "service", "default": "checkout"}]))
    s.start()
    events = s.run_step("build")
    assert kinds(events) == ["StepSucceeded:build", "ApprovalRequested:deploy"]
    request = events[-1]
    assert request.message == "Deploy checkout?"
    assert (request.required_approvers, request.min_approvals) == (["ops-team", "tech-lead"], 2)
    assert request.deadline == at(10 + 60)
    assert s.run.display_status == "waiting_approval"


def test_two_groups_need_two_distinct_people_then_the_step_is_scheduled() -> None:
    s = gate_scenario()
    assert kinds(s.when(approve("bob"))) == ["ApprovalGiven:deploy"]          # bob is in both groups: counts once
    events = s.when(approve("alice"))
    assert kinds(events) == ["ApprovalGiven:deploy", "ApprovalGranted:deploy", "StepScheduled:deploy"]
    assert events[1].approvers == ["alice", "bob"]


def test_a_rejection_stored_without_its_step_failure_fails_the_step_when_the_run_advances() -> None:
    s = gate_scenario()
    s.given(ApprovalRejected(run_id=R, at=at(11), step_id="deploy", actor="carol", comment="not now"))
    events = s.when(Advance())        # the process that rejected went before it stored the StepFailed
    assert kinds(events) == ["StepFailed:deploy", "RunFailed"]
    assert (events[0].category, events[0].error) == ("authorization", "approval rejected by carol: not now")


def test_the_starter_cannot_approve_their_own_run_and_the_refusal_is_recorded() -> None:
    s = Scenario(started(R, [gated(required_approvers=["ops-team"])], actor="alice"))
    s.start()
    with pytest.raises(Refused, match="alice started this run") as refused:
        s.when(approve("alice"))
    assert (refused.value.record.actor, refused.value.record.decision) == ("alice", "approve")


def test_self_approval_when_the_gate_allows_it() -> None:
    s = Scenario(started(R, [gated(required_approvers=["ops-team"], allow_self_approval=True)], actor="alice"))
    s.start()
    assert kinds(s.when(approve("alice"))) == ["ApprovalGiven:deploy", "ApprovalGranted:deploy", "StepScheduled:deploy"]


@pytest.mark.parametrize("first, second, problem", [
    ("bob", "bob", "already approved"),
    ("bob", "dave", "not a required approver"),
])
def test_refused_approvals(first, second, problem) -> None:
    s = gate_scenario()
    s.when(approve(first))
    with pytest.raises(Refused, match=problem):
        s.when(approve(second))


def test_approving_a_gate_that_is_not_waiting_is_refused() -> None:
    s = gate_scenario()
    s.when(approve("alice")), s.when(approve("carol"))
    with pytest.raises(Refused, match="not waiting for approval"):
        s.when(approve("bob"))
    with pytest.raises(Refused, match="has no step 'nope'"):
        s.when(approve("bob", step="nope"))


def test_approving_the_gate_of_a_cancelled_run_is_refused_saying_the_run_is_cancelled() -> None:
    """It said "step deploy is not waiting for approval (its gate is requested)": both halves at once."""
    s = gate_scenario()
    s.when(CancelRun(run_id=R, actor="ops"))
    with pytest.raises(Refused, match=f"run {R} is cancelled; its gates take no more answers"):
        s.when(approve("alice"))


def test_min_approvals_means_any_n_of_the_entries() -> None:
    s = gate_scenario(required_approvers=["ops-team", "tech-lead", "dave"], min_approvals=1)
    assert kinds(s.when(approve("dave"))) == ["ApprovalGiven:deploy", "ApprovalGranted:deploy", "StepScheduled:deploy"]


def test_min_approvals_without_named_approvers_needs_that_many_distinct_people() -> None:
    s = gate_scenario(required_approvers=[], min_approvals=2)
    assert s.run.steps["deploy"].gate.status == "requested"
    assert kinds(s.when(approve("alice"))) == ["ApprovalGiven:deploy"]
    with pytest.raises(Refused, match="already approved"):
        s.when(approve("alice"))
    events = s.when(approve("dave"))
    assert kinds(events) == ["ApprovalGiven:deploy", "ApprovalGranted:deploy", "StepScheduled:deploy"]
    assert events[1].approvers == ["alice", "dave"]


def test_a_gate_without_named_approvers_asks_for_the_count_it_needs() -> None:
    s = Scenario(started(R, [gated(required_approvers=[], min_approvals=3)], actor="starter"))
    (request,) = s.start()
    assert (request.required_approvers, request.min_approvals) == ([], 3)


def test_a_reject_by_a_required_approver_fails_the_step_and_the_run() -> None:
    s = gate_scenario()
    events = s.when(reject("carol"))
    assert kinds(events) == ["ApprovalRejected:deploy", "StepFailed:deploy", "RunFailed"]
    assert events[1].category == "authorization" and "carol" in events[1].error


def test_the_deadline_times_the_gate_out_and_a_late_approval_is_refused() -> None:
    s = gate_scenario(timeout_seconds=5)
    s.given(ApprovalDeadlinePassed(run_id=R, at=at(15), step_id="deploy"))
    with pytest.raises(Refused, match="approval window .* closed"):
        s.when(approve("alice"))
    events = s.when(ExpireGate("deploy"))
    assert kinds(events) == ["ApprovalTimedOut:deploy", "StepFailed:deploy", "RunFailed"]
    assert events[1].category == "timeout"
    assert s.when(ExpireGate("deploy")) == []


def test_an_approval_past_the_deadline_is_refused_even_while_its_timer_is_late() -> None:
    """The timer records the deadline's passing; while it is held up (its service down, say), the window still
    closes on time for whoever answers."""
    s = gate_scenario(timeout_seconds=5)
    assert s.run.steps["deploy"].gate.deadline == at(15)
    assert kinds(s.when(approve("bob"), t=14.9)) == ["ApprovalGiven:deploy"]
    with pytest.raises(Refused, match="approval window of step deploy closed at"):
        s.when(approve("alice"), t=15)
    assert s.run.steps["deploy"].gate.status == "requested"       # the timer, when it comes, times it out


def test_auto_approve_after_timeout_opens_the_gate_as_the_system() -> None:
    s = gate_scenario(timeout_seconds=5, auto_approve_after_timeout=True)
    s.given(ApprovalDeadlinePassed(run_id=R, at=at(15), step_id="deploy"))
    events = s.when(ExpireGate("deploy"))
    assert kinds(events) == ["ApprovalGranted:deploy", "StepScheduled:deploy"]
    assert (events[0].actor, events[0].by_timeout) == ("system", True)


def test_a_deadline_after_the_gate_was_decided_does_nothing() -> None:
    s = gate_scenario(timeout_seconds=5)
    s.when(approve("alice")), s.when(approve("carol"))
    assert s.when(ExpireGate("deploy")) == []


def test_a_paused_runs_gate_can_be_approved_and_the_step_starts_on_resume() -> None:
    s = gate_scenario()
    s.when(PauseRun(run_id=R, actor="ops"))
    s.when(approve("alice"))
    assert kinds(s.when(approve("carol"))) == ["ApprovalGiven:deploy", "ApprovalGranted:deploy"]
    assert kinds(s.when(ResumeRun(run_id=R, actor="ops"))) == ["RunResumed", "StepScheduled:deploy"]


def test_cancelling_a_run_that_waits_for_approval_ends_it_at_once() -> None:
    s = gate_scenario()
    assert kinds(s.when(CancelRun(run_id=R, actor="ops"))) == ["RunCancelRequested", "RunCancelled"]


# -- rollback -------------------------------------------------------------------------------

def undo(step_id: str, **extra) -> dict:
    return noop(step_id, rollback=[{"action": "shell", "args": {"command": f"undo {step_id}"}}], **extra)


def test_on_failure_rollback_undoes_succeeded_steps_in_reverse_order() -> None:
    s = Scenario(started(R, [undo("backup"), noop("no_undo"), undo("deploy"), noop("health")], on_failure="rollback"))
    s.start()
    s.run_step("backup"), s.run_step("no_undo"), s.run_step("deploy")
    s.begin("health")
    events = s.fail("health", "503")
    assert kinds(events) == ["StepFailed:health", "RollbackStarted", "StepRollbackScheduled:deploy"]
    assert events[1].waves == [["deploy"], ["backup"]]
    assert "step health failed: 503" in events[1].reason
    assert s.run.status == "rolling_back"
    s.begin_rollback("deploy")
    assert kinds(s.finish_rollback("deploy")) == ["StepRolledBack:deploy", "StepRollbackScheduled:backup"]
    s.begin_rollback("backup")
    assert kinds(s.finish_rollback("backup")) == ["StepRolledBack:backup", "RollbackCompleted"]
    assert s.run.status == "rolled_back"


def test_a_parallel_group_rolls_back_together_as_one_wave() -> None:
    s = Scenario(started(R, [undo("a", parallel_group="g"), undo("b", parallel_group="g"), undo("c")]))
    s.start()
    s.begin("a"), s.begin("b")
    s.succeed("b"), s.succeed("a")
    s.run_step("c")
    events = s.when(RollbackRun(run_id=R, actor="ops"))
    assert events[0].waves == [["c"], ["a", "b"]]
    assert events[0].actor == "ops"


def test_a_failed_rollback_action_is_recorded_and_the_rollback_goes_on_to_end_failed() -> None:
    s = Scenario(started(R, [undo("a"), undo("b"), noop("c")], on_failure="rollback"))
    s.start()
    s.run_step("a"), s.run_step("b"), s.begin("c")
    s.fail("c")
    s.begin_rollback("b")
    assert kinds(s.finish_rollback("b", error="undo b: exit 1")) == [
        "StepRollbackFailed:b", "StepRollbackScheduled:a"]
    s.begin_rollback("a")
    events = s.finish_rollback("a")
    assert kinds(events) == ["StepRolledBack:a", "RollbackFailed"]
    assert events[-1].failed_steps == ["b"]
    assert s.run.status == "rollback_failed"


def test_rollback_failure_policy_stop_ends_at_the_first_failure() -> None:
    s = Scenario(started(R, [undo("a"), undo("b"), noop("c")], on_failure="rollback", on_rollback_failure="stop"))
    s.start()
    s.run_step("a"), s.run_step("b"), s.begin("c")
    s.fail("c")
    s.begin_rollback("b")
    assert kinds(s.finish_rollback("b", error="boom")) == ["StepRollbackFailed:b", "RollbackFailed"]
    assert s.run.steps["a"].rollback.status == "pending"


def test_a_step_that_partly_ran_is_rolled_back_too() -> None:
    s = Scenario(started(R, [undo("a"), undo("b")], on_failure="rollback"))
    s.start()
    s.run_step("a"), s.begin("b")
    assert s.fail("b")[1].waves == [["b"], ["a"]]


def test_without_anything_to_undo_the_run_just_fails() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")], on_failure="rollback"))
    s.start()
    s.run_step("a"), s.begin("b")
    assert kinds(s.fail("b")) == ["StepFailed:b", "RunFailed"]


def test_rollback_by_hand_only_when_the_run_has_ended() -> None:
    s = Scenario(started(R, [undo("a"), noop("b")]))
    s.start()
    s.run_step("a")
    with pytest.raises(CommandRejected, match="cancel it or let it finish"):
        s.when(RollbackRun(run_id=R, actor="ops"))
    s.run_step("b")
    assert kinds(s.when(RollbackRun(run_id=R, actor="ops"))) == ["RollbackStarted", "StepRollbackScheduled:a"]


def test_rollback_can_be_paused_resumed_and_cancelled() -> None:
    s = Scenario(started(R, [undo("a"), undo("b"), noop("c")], on_failure="rollback"))
    s.start()
    s.run_step("a"), s.run_step("b"), s.begin("c")
    s.fail("c")
    assert kinds(s.when(PauseRun(run_id=R, actor="ops"))) == ["RunPaused"]
    assert kinds(s.begin_rollback("b")) == []                 # paused: not started
    with pytest.raises(CommandRejected, match="paused in its rollback; resume it to go on rolling back"):
        s.when(RollbackRun(run_id=R, actor="ops"))
    assert kinds(s.when(ResumeRun(run_id=R, actor="ops"))) == ["RunResumed", "StepRollbackScheduled:b"]
    s.begin_rollback("b")
    assert kinds(s.when(CancelRun(run_id=R, actor="ops"))) == ["RunCancelRequested"]
    events = s.finish_rollback("b", error="killed", category="cancelled")
    assert kinds(events) == ["StepRollbackFailed:b", "RunCancelled"]


def test_a_rollback_cancelled_half_way_is_finished_by_hand_without_undoing_a_step_twice() -> None:
    s = Scenario(started(R, [undo("a"), undo("b"), noop("c")], on_failure="rollback"))
    s.start()
    s.run_step("a"), s.run_step("b"), s.begin("c")
    s.fail("c")
    s.begin_rollback("b"), s.finish_rollback("b")
    s.begin_rollback("a")
    s.when(CancelRun(run_id=R, actor="ops"))
    assert kinds(s.finish_rollback("a", error="killed", category="cancelled"))[-1] == "RunCancelled"
    events = s.when(RollbackRun(run_id=R, actor="ops"))
    assert kinds(events) == ["RollbackStarted", "StepRollbackScheduled:a"] and events[0].waves == [["a"]]



def approving_each_step(steps: list[dict]) -> Scenario:
    """A run whose starter asked that every step wait for an approval (StartRun's `approval_required`)."""
    event = started(R, steps, actor="alice")
    return Scenario(msgspec.structs.replace(event, approval_required=True))


def test_a_run_started_with_approval_required_asks_before_every_step() -> None:
    s = approving_each_step([noop("build"), noop("verify")])
    (request,) = s.start()
    assert (kinds([request]), request.message, request.required_approvers) == (
        ["ApprovalRequested:build"], "Approve step build?", [])
    assert s.run.display_status == "waiting_approval"
    assert kinds(s.when(approve("bob", "build"))) == ["ApprovalGiven:build", "ApprovalGranted:build",
                                                      "StepScheduled:build"]
    assert kinds(s.run_step("build")) == ["StepSucceeded:build", "ApprovalRequested:verify"]


def test_approval_required_cannot_be_given_by_the_starter_and_leaves_a_steps_own_gate_as_written() -> None:
    s = approving_each_step([noop("build"), gated()])
    s.start()
    with pytest.raises(CommandRejected, match="alice started this run and cannot approve it"):
        s.when(approve("alice", "build"))
    s.when(approve("carol", "build"))
    events = s.run_step("build")
    assert kinds(events) == ["StepSucceeded:build", "ApprovalRequested:deploy"]
    assert (events[-1].message, events[-1].required_approvers) == ("Deploy it?", ["ops-team", "tech-lead"])


def test_who_retried_the_run_cannot_approve_what_the_retry_reran_as_the_starter_cannot() -> None:
    """Four eyes: a retry sets the gated step going again, so its author is refused like the starter, and an
    admin who retried for someone is refused for anyone; someone else still approves."""
    s = gate_scenario()
    s.when(reject("bob"))
    assert s.run.status == "failed"
    s.when(Retry(RetryRun(run_id=R, actor="alice", reason="the window is open now")))
    assert s.run.steps["deploy"].gate.status == "requested"
    with pytest.raises(Refused, match="alice retried this run and cannot approve it") as refused:
        s.when(approve("alice"))
    assert refused.value.record.reason.startswith("alice retried this run")
    s.when(approve("bob"))
    s.when(reject("carol"))
    s.when(Retry(RetryRun(run_id=R, actor="ada", on_behalf_of="dave")))
    with pytest.raises(Refused, match="ada retried this run and cannot approve it, for anyone"):
        s.when(AnswerGate(step_id="deploy", actor="ada", on_behalf_of="carol", groups=GROUPS["carol"], approve=True))
    assert kinds(s.when(approve("carol"))) == ["ApprovalGiven:deploy"]
    assert kinds(s.when(approve("bob"))) == ["ApprovalGiven:deploy", "ApprovalGranted:deploy", "StepScheduled:deploy"]


def test_a_gate_that_allows_self_approval_lets_who_retried_approve_too() -> None:
    s = gate_scenario(allow_self_approval=True)
    s.when(reject("bob"))
    s.when(Retry(RetryRun(run_id=R, actor="alice")))
    assert kinds(s.when(approve("alice"))) == ["ApprovalGiven:deploy"]
