"""Retrying a failed or cancelled run in place, as scenarios: what runs again, what keeps its outcome."""
from __future__ import annotations

from typing import Any

import pytest

from events.commands import CancelRun, RetryRun, RollbackRun
from events.run import RunRetried, StepScheduled
from projections.audit import audit_entry
from projections.sentences import sentence
from services.domain.run.commands import FinishStep, RecordRetryVerdict, Retry
from services.domain.run.state import fold
from services.errors import CommandRejected
from services.playbook import PlaybookInvalid, load_playbook
from tests.helpers import R, Scenario, kinds, noop, playbook_yaml, started
from ui.cli.render import status_table

FIVE = [noop(name, rollback=[{"action": "noop"}]) for name in ("a", "b", "c", "d", "e")]


def retry(**asked: Any) -> Retry:
    return Retry(RetryRun(run_id=R, actor=asked.pop("actor", "olga"), **asked))


def replacement(steps: list[dict[str, Any]], **top: Any) -> Retry:
    return Retry(RetryRun(run_id=R, actor="olga", source="fixed.yaml"),
                 replacement=load_playbook(playbook_yaml(steps, **top)))


def failed_at_c(steps: list[dict[str, Any]] = FIVE, **top: Any) -> Scenario:
    s = Scenario(started(R, steps, **top))
    s.start()
    s.run_step("a", out="from a")
    s.run_step("b")
    s.begin("c")
    assert kinds(s.fail("c", "cp: cannot stat '/srv/release.tar': No such file or directory", "configuration")) == [
        "StepFailed:c", "RunFailed"]
    return s


def test_a_run_failed_at_its_third_step_goes_on_from_there_and_ends_once_more() -> None:
    s = failed_at_c()
    events = s.when(retry(reason="the release file is there now"))
    assert kinds(events) == ["RunRetried", "StepScheduled:c"]
    assert events[0].steps == ["c", "d", "e"] and events[0].reason == "the release file is there now"
    assert events[1].attempt == 2            # a new attempt of the failed step
    s.run_step("c"), s.run_step("d")
    assert kinds(s.run_step("e")) == ["StepSucceeded:e", "RunCompleted"]
    assert s.run.status == "completed"
    assert s.run.steps["a"].attempt.number == 1 and s.run.steps["a"].attempt.outputs == {"out": "from a"}


def test_an_admins_retry_for_someone_names_both_in_the_event_the_timeline_the_audit_and_the_steps() -> None:
    s = failed_at_c()
    (retried, _) = s.when(retry(actor="ada", on_behalf_of="olga", reason="restored"))
    assert (retried.actor, retried.on_behalf_of) == ("ada", "olga")
    assert sentence(retried) == "retried by ada for olga: c, d, e run again; restored"
    entry = audit_entry(9, retried)
    assert entry is not None and (entry.actor, entry.on_behalf_of, entry.action) == ("ada", "olga", "retry")
    assert s.run.steps["d"].reason == "runs again: retried by ada for olga"


def ended_again(how: str) -> Scenario:
    """Retried by root from c; c fails again, or the run is cancelled, before d and e ran."""
    s = failed_at_c()
    s.when(retry(actor="root"))
    if how == "failed":
        s.begin("c")
        s.fail("c", "still missing")
    else:
        s.when(CancelRun(run_id=R, actor="root"))
    return s


@pytest.mark.parametrize("how", ["failed", "cancelled"])
def test_a_step_the_retry_left_pending_says_nothing_of_running_again_once_the_run_ended(how: str) -> None:
    s = ended_again(how)
    for run in (s.run, fold(R, list(enumerate(s.events, 1)))):
        assert run.status == how
        assert [(run.steps[i].status, run.steps[i].reason) for i in "de"] == [("pending", "")] * 2
        assert "runs again" not in status_table(run)


def test_a_rollback_after_a_retried_run_undoes_every_step_once_in_reverse_order_of_completion() -> None:
    s = failed_at_c()
    s.when(retry())
    s.run_step("c"), s.run_step("d"), s.run_step("e")
    started_rollback = s.when(RollbackRun(run_id=R, actor="olga", reason="wrong release"))[0]
    assert started_rollback.waves == [["e"], ["d"], ["c"], ["b"], ["a"]]


def test_a_step_that_ran_before_the_retry_is_undone_even_if_it_has_not_finished_again() -> None:
    s = failed_at_c()
    s.when(retry(from_step="b"))
    s.begin("b")
    s.fail("b", "no space left on device", "resource")
    assert s.when(RollbackRun(run_id=R, actor="olga"))[0].waves == [["b"], ["c"], ["a"]]


def test_from_a_step_runs_it_and_everything_downstream_of_it_again() -> None:
    dag = [noop("a"), noop("b", depends_on=["a"]), noop("side", depends_on=["a"]), noop("c", depends_on=["b"])]
    s = Scenario(started(R, dag))
    s.start()
    s.run_step("a")
    s.begin("b"), s.begin("side")
    s.succeed("side")
    s.fail("b")
    events = s.when(retry(from_step="a"))
    assert events[0].steps == ["a", "b", "side", "c"]
    assert kinds(events) == ["RunRetried", "StepScheduled:a"]


def test_a_failed_step_outside_what_runs_again_is_refused_with_where_to_retry_from() -> None:
    s = failed_at_c()
    with pytest.raises(CommandRejected, match="step c failed and would not run again from d; retry from c"):
        s.when(retry(from_step="d"))


def test_an_unknown_step_to_retry_from_is_refused_with_a_hint() -> None:
    s = failed_at_c()
    with pytest.raises(CommandRejected, match="no step 'cc' to retry from — did you mean 'c'") as refused:
        s.when(retry(from_step="cc"))
    assert refused.value.code == "unknown_step"


@pytest.mark.parametrize("how, status", [("running", "running"), ("completed", "completed")])
def test_only_a_failed_or_cancelled_run_can_be_retried(how: str, status: str) -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start()
    if how == "completed":
        s.run_step("a")
    with pytest.raises(CommandRejected, match=f"run1 (is )?{status}") as refused:
        s.when(retry())
    assert refused.value.code == "illegal_transition"


def test_a_rolled_back_run_is_not_retried() -> None:
    s = failed_at_c()
    s.when(RollbackRun(run_id=R, actor="olga"))
    with pytest.raises(CommandRejected, match="is rolling back: what it did is being undone"):
        s.when(retry())


def test_a_cancelled_run_goes_on_with_the_cancelled_step_and_what_never_ran() -> None:
    s = Scenario(started(R, FIVE))
    s.start()
    s.run_step("a")
    s.begin("b")
    s.when(CancelRun(run_id=R, actor="olga"))
    assert kinds(s.fail("b", "killed", "cancelled")) == ["StepFailed:b", "RunCancelled"]
    events = s.when(retry())
    assert events[0].steps == ["b", "c", "d", "e"]
    assert s.run.status == "running" and s.run.steering.cancel_requested_by is None
    s.run_step("b"), s.run_step("c"), s.run_step("d")
    assert kinds(s.run_step("e"))[-1] == "RunCompleted"


def test_a_retry_timer_armed_before_a_cancel_cannot_start_an_attempt_after_the_retry() -> None:
    s = Scenario(started(R, [noop("a", retry={"max_attempts": 3})]))
    s.start(), s.begin("a")
    s.fail("a", "connection refused", "network")
    s.when(RecordRetryVerdict(step_id="a", attempt=1, retry=True, category="network", reason="", delay_seconds=60))
    s.when(CancelRun(run_id=R, actor="olga"))
    assert s.run.status == "cancelled"
    scheduled = s.when(retry())[-1]
    assert isinstance(scheduled, StepScheduled) and scheduled.attempt == 3   # attempt 2 was the armed timer's
    s.begin("a")
    s.when(FinishStep(step_id="a", attempt=3, outputs={}, duration_ms=1.0, error="refused", category="network"))
    s.when(RecordRetryVerdict(step_id="a", attempt=3, retry=False, category="network", reason="given up"))
    late_timer = StepScheduled(run_id=R, at=s.run.started_at, step_id="a", attempt=2, reason="retry after network")
    s.given(late_timer)
    assert s.run.steps["a"].status == "failed"


def test_corrected_parameters_are_typed_recorded_and_used_by_the_steps_that_run_again() -> None:
    steps = [noop("a"), noop("b", when={"type": "greater_than", "left": "${replicas}", "right": 2})]
    s = Scenario(started(R, steps, parameters=[{"name": "replicas", "type": "integer", "default": 1},
                                               {"name": "region", "default": "eu"}]))
    s.start()
    s.begin("a")
    s.fail("a")
    events = s.when(retry(parameters={"replicas": "3"}))
    assert events[0].corrected == ["replicas"]
    assert events[0].parameters == {"replicas": 3, "region": "eu"}
    assert s.run.started.parameters == {"replicas": 3, "region": "eu"}
    assert kinds(s.run_step("a")) == ["StepSucceeded:a", "StepScheduled:b"]


def test_a_correction_that_does_not_fit_the_parameter_is_refused_with_its_diagnostic() -> None:
    s = failed_at_c(parameters=[{"name": "replicas", "type": "integer", "default": 1}])
    with pytest.raises(PlaybookInvalid, match="parameter 'replicas' must be an integer"):
        s.when(retry(parameters={"replicas": "three"}))
    with pytest.raises(PlaybookInvalid, match="PB305"):
        s.when(retry(parameters={"replica": "3"}))


def test_a_gate_asks_again_when_its_step_runs_again() -> None:
    gated = [noop("a"), noop("b", approval_gate={"required_approvers": ["ops"]})]
    s = Scenario(started(R, gated))
    s.start()
    s.begin("a")
    s.fail("a")
    s.when(retry())
    assert kinds(s.run_step("a")) == ["StepSucceeded:a", "ApprovalRequested:b"]


def test_a_replacement_playbook_may_change_what_runs_again_and_add_steps() -> None:
    s = failed_at_c()
    fixed = FIVE[:2] + [noop("c", args={"message": "fixed"}, rollback=[{"action": "noop"}]), noop("c2")] + FIVE[3:]
    events = s.when(replacement(fixed))
    assert events[0].source == "fixed.yaml" and events[0].steps == ["c", "d", "e"]
    assert s.run.specs["c"].args == {"message": "fixed"} and list(s.run.steps) == ["a", "b", "c", "c2", "d", "e"]
    s.run_step("c")
    assert kinds(s.run_step("c2")) == ["StepSucceeded:c2", "StepScheduled:d"]


@pytest.mark.parametrize("steps, refusal", [
    ([FIVE[0], *FIVE[2:]], "step b ran in run run1; the replacement playbook must keep it"),
    ([noop("a", args={"message": "changed"}), *FIVE[1:]],
     "step a succeeded as pinned, and the replacement playbook changes it; retry from a to run it as changed"),
    ([noop("first"), *FIVE], "step a already succeeded, but in the replacement playbook it waits for first"),
    ({"name": "other"}, "run run1 runs playbook 'test'; the replacement is 'other': give a version of the same"),
])
def test_a_replacement_that_contradicts_what_ran_is_refused(steps: list[dict[str, Any]] | dict[str, str],
                                                            refusal: str) -> None:
    s = failed_at_c()
    with pytest.raises(CommandRejected, match=refusal) as refused:
        s.when(replacement(FIVE, **steps) if isinstance(steps, dict) else replacement(steps))
    assert refused.value.code == "incompatible_playbook"


def test_nothing_left_to_run_is_refused() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start(), s.begin("a")
    s.when(CancelRun(run_id=R, actor="olga"))
    s.succeed("a")
    assert s.run.status == "cancelled"
    with pytest.raises(CommandRejected, match="nothing left to run"):
        s.when(retry())
    assert isinstance(s.when(retry(from_step="a"))[0], RunRetried)


def test_a_retried_run_replays_from_its_events_to_the_same_state() -> None:
    s = failed_at_c()
    s.when(retry(parameters={}))
    s.run_step("c")
    replayed = fold(R, list(enumerate(s.events, 1)))
    assert {i: (st.status, st.attempt.number, st.finished_order) for i, st in replayed.steps.items()} == {
        i: (st.status, st.attempt.number, st.finished_order) for i, st in s.run.steps.items()}
    assert replayed.status == "running" and {i for i, st in replayed.steps.items() if st.status == "pending"} == {"e"}
    assert replayed.ready == s.run.ready and replayed.waiting == s.run.waiting
