"""The run decider as scenarios: given these events, when this command, then these events."""
from __future__ import annotations

import tracemalloc
from unittest import mock

import msgspec
import pytest

from events.commands import CancelRun, PauseRun, ResumeRun
from events.playbook import FailurePolicy
from events.run import RunCancelled, RunCompleted, RunFailed, RunStarted, StepFailed, StepScheduled, StepStarted
from services.errors import CommandRejected, UnknownRun
from services.domain.run.commands import BeginStep, FinishStep, InterruptStep
from services.domain.run.decider import context_of, decide
from services.domain.run.state import Run, StepState
from tests.helpers import R, Scenario, at, kinds, noop, started


def test_sequential_steps_are_scheduled_one_after_the_other() -> None:
    s = Scenario(started(R, [noop("a"), noop("b"), noop("c")]))
    assert kinds(s.start()) == ["StepScheduled:a"]
    assert kinds(s.begin("a")) == ["StepStarted:a"]
    assert kinds(s.succeed("a")) == ["StepSucceeded:a", "StepScheduled:b"]
    s.run_step("b")
    assert kinds(s.run_step("c")) == ["StepSucceeded:c", "RunCompleted"]
    assert s.run.status == "completed"


def test_a_parallel_group_runs_together_and_the_next_step_waits_for_all() -> None:
    s = Scenario(started(R, [noop("prep"), noop("x", parallel_group="g"), noop("y", parallel_group="g"),
                             noop("z", parallel_group="g"), noop("after")]))
    s.start()
    assert kinds(s.run_step("prep")) == ["StepSucceeded:prep", "StepScheduled:x", "StepScheduled:y", "StepScheduled:z"]
    s.begin("x"), s.begin("y"), s.begin("z")
    assert kinds(s.succeed("y")) == ["StepSucceeded:y"]
    assert kinds(s.succeed("x")) == ["StepSucceeded:x"]
    assert kinds(s.succeed("z")) == ["StepSucceeded:z", "StepScheduled:after"]


def test_depends_on_makes_a_dag() -> None:
    s = Scenario(started(R, [noop("a"), noop("b", depends_on=[]), noop("c", depends_on=["a", "b"])]))
    assert kinds(s.start()) == ["StepScheduled:a", "StepScheduled:b"]
    s.begin("a"), s.begin("b")
    assert kinds(s.succeed("b")) == ["StepSucceeded:b"]
    assert kinds(s.succeed("a")) == ["StepSucceeded:a", "StepScheduled:c"]


def test_a_false_when_skips_the_step_and_never_fails_it() -> None:
    production_only = {"type": "equals", "left": "${target}", "right": "production"}
    s = Scenario(started(R, [noop("a"), noop("prod_only", when=production_only), noop("c")],
                         parameters=[{"name": "target"}], values={"target": "staging"}))
    s.start()
    events = s.run_step("a")
    assert kinds(events) == ["StepSucceeded:a", "StepSkipped:prod_only", "StepScheduled:c"]
    assert "false" in events[1].reason
    assert kinds(s.run_step("c")) == ["StepSucceeded:c", "RunCompleted"]


def test_when_can_read_outputs_of_earlier_steps() -> None:
    s = Scenario(started(R, [noop("probe", args={"outputs": {"healthy": False}}),
                             noop("fix", when={"type": "equals", "left": "${steps.probe.healthy}", "right": False})]))
    s.start()
    assert kinds(s.run_step("probe", healthy=True)) == ["StepSucceeded:probe", "StepSkipped:fix", "RunCompleted"]


def test_a_when_that_cannot_be_evaluated_fails_the_step_as_configuration() -> None:
    # outputs only the run knows (a value, not a mapping written out), so validation lets the name through
    s = Scenario(started(R, [noop("probe", args={"outputs": "${probed}"}), noop("fix", when="${steps.probe.missing}")],
                         variables={"probed": {}}))
    s.start()
    events = s.run_step("probe")
    assert kinds(events) == ["StepSucceeded:probe", "StepFailed:fix", "RunFailed"]
    assert events[1].category == "configuration"


def test_a_failed_step_fails_the_run_and_nothing_after_it_starts() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start(), s.begin("a")
    events = s.fail("a", "exit 3")
    assert kinds(events) == ["StepFailed:a", "RunFailed"]
    assert events[-1].failed_steps == ["a"]
    assert "exit 3" in events[-1].reason


def test_a_failure_waits_for_steps_still_running_before_failing_the_run() -> None:
    s = Scenario(started(R, [noop("x", parallel_group="g"), noop("y", parallel_group="g"), noop("after")]))
    s.start(), s.begin("x"), s.begin("y")
    assert kinds(s.fail("x")) == ["StepFailed:x"]
    assert kinds(s.succeed("y")) == ["StepSucceeded:y", "RunFailed"]


def test_continue_on_failure_lets_the_run_go_on_and_complete() -> None:
    s = Scenario(started(R, [noop("a", continue_on_failure=True), noop("b")]))
    s.start(), s.begin("a")
    assert kinds(s.fail("a")) == ["StepFailed:a", "StepScheduled:b"]
    assert kinds(s.run_step("b")) == ["StepSucceeded:b", "RunCompleted"]


def test_a_step_after_a_tolerated_failure_reads_the_failed_steps_outputs() -> None:
    check = {"type": "equals", "left": "${steps.probe.returncode}", "right": 3}
    probe = noop("probe", continue_on_failure=True, args={"outputs": {"returncode": 0, "stdout": ""}})
    s = Scenario(started(R, [probe, noop("repair", depends_on=["probe"], when=check),
                             noop("report", args={"message": "probe said ${steps.probe.stdout}"})]))
    s.start(), s.begin("probe")
    failed = s.when(FinishStep(step_id="probe", attempt=1, outputs={"returncode": 3, "stdout": "disk full"},
                               duration_ms=1.0, error="command exited with code 3"))
    assert kinds(failed) == ["StepFailed:probe", "StepScheduled:repair"]
    s.run_step("repair")
    assert context_of(s.run).steps["probe"] == {"returncode": 3, "stdout": "disk full"}


def test_a_step_whose_when_reads_a_skipped_steps_outputs_is_skipped_too() -> None:
    healthy = {"type": "truthy", "left": "${steps.canary.healthy}"}
    typo = {"type": "truthy", "left": "${steps.build.healthyy}"}
    s = Scenario(started(R, [noop("canary", when=False, args={"outputs": {"healthy": True}}),
                             noop("promote", depends_on=["canary"], when=healthy),
                             noop("build", args={"outputs": "${built}"}), noop("announce", when=typo)],
                         variables={"built": {}}))
    events = s.start()
    assert kinds(events) == ["StepSkipped:canary", "StepSkipped:promote", "StepScheduled:build"]
    assert events[1].reason == "`when` reads the outputs of step canary, which was skipped"
    s.begin("build")
    failed = s.succeed("build", healthy=True)   # an output missing from a step that ran is still a mistake
    assert kinds(failed) == ["StepSucceeded:build", "StepFailed:announce", "RunFailed"]
    assert "cannot evaluate `when`" in failed[1].error


def chosen(event: RunStarted, on_failure: FailurePolicy) -> RunStarted:
    """The same start, with a failure policy chosen by whoever started it (StartRun's `on_failure`)."""
    return msgspec.structs.replace(event, on_failure=on_failure)


def test_a_policy_chosen_at_the_start_wins_over_the_playbooks() -> None:
    s = Scenario(chosen(started(R, [noop("a"), noop("b")], on_failure="stop"), "continue"))
    assert s.run.on_failure == "continue"
    s.start(), s.begin("a")
    assert kinds(s.fail("a")) == ["StepFailed:a", "StepScheduled:b"]
    assert kinds(s.run_step("b")) == ["StepSucceeded:b", "RunFailed"]


def test_stop_chosen_at_the_start_stops_a_playbook_that_would_go_on() -> None:
    s = Scenario(chosen(started(R, [noop("a"), noop("b")], on_failure="continue"), "stop"))
    s.start(), s.begin("a")
    assert kinds(s.fail("a")) == ["StepFailed:a", "RunFailed"]


def test_rollback_chosen_at_the_start_undoes_what_succeeded() -> None:
    undoable = noop("a", rollback=[{"action": "shell", "args": {"command": "undo a"}}])
    s = Scenario(chosen(started(R, [undoable, noop("b")]), "rollback"))
    s.start(), s.run_step("a"), s.begin("b")
    assert kinds(s.fail("b")) == ["StepFailed:b", "RollbackStarted", "StepRollbackScheduled:a"]


def test_on_failure_continue_runs_everything_then_fails_the_run() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")], on_failure="continue"))
    s.start(), s.begin("a")
    assert kinds(s.fail("a")) == ["StepFailed:a", "StepScheduled:b"]
    assert kinds(s.run_step("b")) == ["StepSucceeded:b", "RunFailed"]


def test_outputs_are_recorded_for_later_steps() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start()
    s.run_step("a", version="2.4.1")
    assert s.run.steps["a"].attempt.outputs == {"version": "2.4.1"}


def test_an_attempt_starts_once_and_a_second_begin_does_nothing() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start()
    assert kinds(s.begin("a")) == ["StepStarted:a"]
    assert s.begin("a") == []


def test_a_stale_schedule_is_ignored() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start()
    stale = BeginStep(step_id="a", attempt=1, scheduled_seq=s.run.steps["a"].attempt.scheduled_seq - 1, executor="ex")
    assert s.when(stale) == []


def test_an_interrupted_attempt_runs_again_as_the_next_attempt() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start(), s.begin("a")
    events = s.when(InterruptStep(step_id="a", attempt=1, reason="the lease of executor ex1 lapsed"))
    assert kinds(events) == ["StepFailed:a", "StepScheduled:a"]
    assert (events[0].category, events[0].error) == ("interrupted", "the lease of executor ex1 lapsed")
    assert (events[1].attempt, events[1].reason) == (2, "previous attempt interrupted")
    assert s.when(InterruptStep(step_id="a", attempt=1, reason="again")) == []   # taken over once
    assert kinds(s.begin("a")) == ["StepStarted:a"]
    assert kinds(s.succeed("a")) == ["StepSucceeded:a", "StepScheduled:b"]


def test_an_attempt_claimed_but_never_started_is_scheduled_again() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start()
    first = s.run.steps["a"].attempt.scheduled_seq
    [again] = s.when(InterruptStep(step_id="a", attempt=1, reason="its holder died before it started"))
    assert kinds([again]) == ["StepScheduled:a"] and again.attempt == 1
    assert again.reason == "its executor stopped before starting it"
    assert s.run.steps["a"].attempt.scheduled_seq > first
    assert kinds(s.begin("a")) == ["StepStarted:a"]


def test_only_the_current_attempt_of_a_known_step_can_be_interrupted() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start(), s.begin("a")
    assert s.when(InterruptStep(step_id="a", attempt=2, reason="another attempt")) == []
    assert s.when(InterruptStep(step_id="ghost", attempt=1, reason="no such step")) == []


def test_a_start_records_where_the_attempt_runs_and_its_lease() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start()
    step = s.run.steps["a"]
    [begun] = s.when(BeginStep(step_id="a", attempt=1, scheduled_seq=step.attempt.scheduled_seq, executor="ex1",
                               lease=42, host="node-1", boot_id="b00t", pid=4242, pid_started=777))
    assert (begun.lease, begun.host, begun.boot_id, begun.pid, begun.pid_started) == (42, "node-1", "b00t", 4242, 777)
    assert s.run.steps["a"].attempt.lease == 42


def test_a_finish_recorded_twice_is_recorded_once() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start(), s.begin("a")
    finish = FinishStep(step_id="a", attempt=1, outputs={}, duration_ms=1.0)
    assert kinds(s.when(finish)) == ["StepSucceeded:a", "StepScheduled:b"]
    assert s.when(finish) == []


def test_pause_stops_new_steps_and_resume_schedules_them_again() -> None:
    s = Scenario(started(R, [noop("a"), noop("b"), noop("c")]))
    s.start(), s.begin("a")
    assert kinds(s.when(PauseRun(run_id=R, actor="bob"))) == ["RunPaused"]
    assert kinds(s.succeed("a")) == ["StepSucceeded:a"]           # in flight finishes, b not scheduled
    assert s.run.status == "paused"
    events = s.when(ResumeRun(run_id=R, actor="bob"))
    assert kinds(events) == ["RunResumed", "StepScheduled:b"]
    assert events[0].actor == "bob"


def test_a_step_scheduled_before_the_pause_does_not_start_and_is_scheduled_again_on_resume() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start()
    s.when(PauseRun(run_id=R, actor="bob"))
    assert s.begin("a") == []
    events = s.when(ResumeRun(run_id=R, actor="bob"))
    assert kinds(events) == ["RunResumed", "StepScheduled:a"]
    assert events[1].reason == "resumed"
    assert kinds(s.begin("a")) == ["StepStarted:a"]


@pytest.mark.parametrize("status_events, command, message", [
    ([RunCompleted(run_id=R, at=at(5))], PauseRun(run_id=R, actor="bob"),
     "is completed; only a running run can be paused"),
    ([RunCancelled(run_id=R, at=at(5))], ResumeRun(run_id=R, actor="bob"),
     "is cancelled; only a paused run can be resumed"),
    ([RunFailed(run_id=R, at=at(5), reason="x")], CancelRun(run_id=R, actor="bob"), "already failed"),
])
def test_illegal_transitions_are_rejected_with_a_reason(status_events, command, message) -> None:
    s = Scenario(started(R, [noop("a")]), *status_events)
    with pytest.raises(CommandRejected, match=message):
        s.when(command)


def test_commands_that_already_took_effect_produce_nothing() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start(), s.begin("a")
    assert kinds(s.when(PauseRun(run_id=R, actor="bob"))) == ["RunPaused"]
    assert s.when(PauseRun(run_id=R, actor="bob")) == []
    assert kinds(s.when(ResumeRun(run_id=R, actor="bob"))) == ["RunResumed"]
    assert s.when(ResumeRun(run_id=R, actor="carol")) == []        # a second resume: running already
    assert kinds(s.when(CancelRun(run_id=R, actor="bob"))) == ["RunCancelRequested"]
    assert s.when(CancelRun(run_id=R, actor="carol")) == []


def test_an_unknown_run_is_rejected() -> None:
    with pytest.raises(UnknownRun, match="no run with id 'nope'"):
        decide(Run(id="nope"), PauseRun(run_id="nope", actor="bob"), at(1))


def test_cancel_with_nothing_running_cancels_at_once() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start()
    events = s.when(CancelRun(run_id=R, actor="bob", reason="wrong target"))
    assert kinds(events) == ["RunCancelRequested", "RunCancelled"]
    assert (events[0].actor, events[0].reason) == ("bob", "wrong target")
    assert s.begin("a") == []


def test_cancel_waits_for_the_running_step_to_be_killed() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start(), s.begin("a")
    assert kinds(s.when(CancelRun(run_id=R, actor="bob"))) == ["RunCancelRequested"]
    assert kinds(s.fail("a", "killed", "cancelled")) == ["StepFailed:a", "RunCancelled"]
    assert s.run.status == "cancelled"


def test_a_paused_run_can_be_cancelled() -> None:
    s = Scenario(started(R, [noop("a")]))
    s.start()
    s.when(PauseRun(run_id=R, actor="bob"))
    assert kinds(s.when(CancelRun(run_id=R, actor="bob"))) == ["RunCancelRequested", "RunCancelled"]


def test_advance_is_idempotent() -> None:
    s = Scenario(started(R, [noop("a")]))
    assert kinds(s.start()) == ["StepScheduled:a"]
    assert s.start() == []


def test_deciding_looks_ahead_on_a_copy_and_leaves_the_run_as_it_was() -> None:
    s = Scenario(started(R, [noop("a"), noop("b", parallel_group="g"), noop("c", parallel_group="g"), noop("d")]))
    s.start()
    s.begin("a")
    before = (dict(s.run.waiting), set(s.run.ready), s.run.unsettled, s.run.running, s.run.retrying)
    finish = FinishStep(step_id="a", attempt=1, outputs={}, duration_ms=1.0)
    assert [type(e).__name__ for e in decide(s.run, finish, at(5))] == ["StepSucceeded", "StepScheduled",
                                                                        "StepScheduled"]
    assert (s.run.waiting, s.run.ready, s.run.unsettled, s.run.running, s.run.retrying) == before
    assert s.run.steps["a"].status == "running" and s.run.waiting["d"] == 2


def test_deciding_on_a_big_run_copies_only_the_steps_the_decision_changes() -> None:
    s = Scenario(started(R, [noop(f"s{i}") for i in range(10_000)]))
    s.start()
    s.begin("s0")
    finish = FinishStep(step_id="s0", attempt=1, outputs={}, duration_ms=1.0)
    with mock.patch.object(StepState, "copy", autospec=True, side_effect=StepState.copy) as copy:
        tracemalloc.start()
        try:
            events = decide(s.run, finish, at(5))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert kinds(events) == ["StepSucceeded:s0", "StepScheduled:s1"]
    assert sorted(call.args[0].id for call in copy.call_args_list) == ["s0", "s1"]
    assert peak < 64 * 1024, f"deciding allocated {peak} bytes: it copied the run's tables"   # copying them: ~400 KB
    assert s.run.steps["s0"].status == "running" and s.run.steps["s1"].status == "pending"
    assert s.run.waiting["s1"] == 1 and s.run.ready == set()


def test_a_tolerated_failure_scheduled_again_holds_its_dependents_back_again() -> None:
    s = Scenario(started(R, [noop("a", continue_on_failure=True), noop("b")]),
                 StepScheduled(run_id=R, at=at(1), step_id="a", attempt=1),
                 StepStarted(run_id=R, at=at(2), step_id="a", attempt=1, executor="ex1"),
                 StepFailed(run_id=R, at=at(3), step_id="a", attempt=1, error="flaky"))
    assert s.run.ready == {"b"} and s.run.unsettled == 1
    s.given(StepScheduled(run_id=R, at=at(4), step_id="a", attempt=2))
    assert s.run.ready == set() and s.run.waiting["b"] == 1 and s.run.unsettled == 2


def test_a_playbook_of_only_skipped_steps_completes() -> None:
    s = Scenario(started(R, [noop("a", when=False), noop("b", when=False)]))
    assert kinds(s.start()) == ["StepSkipped:a", "StepSkipped:b", "RunCompleted"]


def test_every_event_names_the_run_and_who_caused_it() -> None:
    s = Scenario(started(R, [noop("a")], actor="alice"))
    s.start()
    events = s.when(PauseRun(run_id=R, actor="bob")) + s.when(ResumeRun(run_id=R, actor="carol"))
    assert all(e.run_id == R for e in events)
    assert [(type(e).__name__, getattr(e, "actor", None)) for e in events] == [
        ("RunPaused", "bob"), ("RunResumed", "carol"), ("StepScheduled", None)]
    assert s.run.started.actor == "alice"


def test_a_dry_run_executes_nothing_and_records_the_plan() -> None:
    production_only = {"type": "equals", "left": "${target}", "right": "production"}
    s = Scenario(started(R, [noop("check_a", parallel_group="g", args={"outputs": {"broken": False}}),
                             noop("check_b", parallel_group="g"),
                             noop("prod", when=production_only), noop("fix", when="${steps.check_a.broken}")],
                         parameters=[{"name": "target"}], values={"target": "staging"}, dry_run=True))
    events = s.start()
    assert kinds(events) == ["StepSkipped:check_a", "StepSkipped:check_b", "StepSkipped:prod", "StepSkipped:fix",
                             "RunCompleted"]
    reasons = {e.step_id: e.reason for e in events[:-1]}
    assert reasons["check_a"] == "dry run: would run; parallel group g"
    assert reasons["prod"] == "dry run: would skip; `when` is false"
    assert reasons["fix"].startswith("dry run: decided at run time")
    assert s.start() == []


def test_an_executor_deciding_again_after_its_own_start_does_not_call_it_interrupted() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start()
    step = s.run.steps["a"]
    begin = BeginStep(step_id="a", attempt=1, scheduled_seq=step.attempt.scheduled_seq, executor="ex1")
    assert kinds(s.when(begin)) == ["StepStarted:a"]
    assert s.when(begin) == []    # the same executor, after a conflict part-way through its decision
