"""Cancel always ends a run, whatever state its steps are in: at once when nothing runs, else when what runs is
recorded ended by whoever can (its executor, or the executor that takes its lapsed lease over); and late news of
the cancelled run changes nothing."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from events.commands import CancelRun, PauseRun, RollbackRun
from events.run import RunCancelled, RunEvent
from services.errors import CommandRejected
from services.domain.run.commands import (
    AnswerGate, BeginStep, FinishStep, InterruptStep, RecordRetryVerdict, RunCommand,
)
from tests.helpers import R, Scenario, kinds, noop, started

RETRY = {"max_attempts": 3, "base_delay": 1, "jitter": "none"}
GATE = {"approval_gate": {"message": "Deploy it?", "required_approvers": ["ops"]}}
TAKEN_OVER = "executor ex1 stopped renewing its lease on attempt 1 (no renewal for 5 s); ex2 took it over"


def finished(step_id: str, category: str, error: str, attempt: int = 1, rollback: bool = False) -> FinishStep:
    return FinishStep(step_id=step_id, attempt=attempt, outputs=[] if rollback else {}, duration_ms=1.0,
                      error=error, category=category, rollback=rollback)


def interrupted(step_id: str, attempt: int = 1, rollback: bool = False) -> InterruptStep:
    return InterruptStep(step_id=step_id, attempt=attempt, reason=TAKEN_OVER, rollback=rollback)


def scheduled() -> Scenario:
    s = Scenario(started(R, [noop("a")]))
    s.start()
    return s


def running() -> Scenario:
    s = scheduled()
    s.begin("a")
    return s


def deciding_its_retry() -> Scenario:
    s = Scenario(started(R, [noop("a", retry=RETRY)]))
    s.start(), s.begin("a"), s.fail("a", "503", "temporary")
    return s


def waiting_for_its_retry() -> Scenario:
    s = deciding_its_retry()
    s.when(RecordRetryVerdict(step_id="a", attempt=1, retry=True, category="temporary", reason="r", delay_seconds=60))
    return s


def waiting_for_approval() -> Scenario:
    s = Scenario(started(R, [noop("a", **GATE)]))
    s.start()
    return s


def paused_while_running() -> Scenario:
    s = running()
    s.when(PauseRun(run_id=R, actor="bob"))
    return s


def rolling_back() -> Scenario:
    s = Scenario(started(R, [noop("a", rollback=[{"action": "noop"}]), noop("b")]))
    s.start(), s.run_step("a"), s.begin("b"), s.fail("b")
    s.when(RollbackRun(run_id=R, actor="bob"))
    rollback = s.run.steps["a"].rollback
    s.when(BeginStep(step_id="a", attempt=rollback.attempt, scheduled_seq=rollback.scheduled_seq, executor="ex1",
                     rollback=True))
    return s


def already_cancelling() -> Scenario:
    s = running()
    s.when(CancelRun(run_id=R, actor="bob"))
    return s


# The run, then what the world sends after the cancel: what ends its running work, then late news.
CASES: dict[str, tuple[Callable[[], Scenario], list[RunCommand]]] = {
    "a step scheduled, not started": (scheduled, [BeginStep(step_id="a", attempt=1, scheduled_seq=1, executor="ex1")]),
    "a step claimed by an executor that died before starting it": (scheduled, [interrupted("a")]),
    "a step running, killed by its executor": (running, [finished("a", "cancelled", "cancelled while running")]),
    "a step running on an executor that died": (running, [interrupted("a")]),
    "a step running whose outcome could not be stored": (
        running, [finished("a", "resource", "the step's outcome could not be recorded: too big")]),
    "a failed step waiting for its retry decision": (
        deciding_its_retry, [RecordRetryVerdict(step_id="a", attempt=1, retry=True, category="temporary",
                                                reason="r", delay_seconds=1)]),
    "a failed step waiting for its retry": (waiting_for_its_retry, []),
    "a step waiting for approval": (waiting_for_approval, []),
    "a paused run with a step running": (paused_while_running, [finished("a", "cancelled", "cancelled")]),
    "a rollback step running on an executor that died": (rolling_back, [interrupted("a", rollback=True)]),
    "a run cancelling already, cancelled again, its step's executor dead": (already_cancelling, [interrupted("a")]),
}


@pytest.mark.parametrize("case", CASES)
def test_cancel_ends_the_run(case: str) -> None:
    build, world = CASES[case]
    s = build()
    decided: list[RunEvent] = s.when(CancelRun(run_id=R, actor="bob", reason="wrong target"))
    for command in world:
        decided += s.when(command)
    assert s.run.status == "cancelled", kinds(decided)
    assert sum(isinstance(e, RunCancelled) for e in decided) == 1
    assert not {"StepStarted", "StepScheduled", "StepRetryScheduled", "RunFailed", "RunCompleted"} & {
        k.split(":")[0] for k in kinds(decided)}, "cancel started nothing new"


def test_an_approval_after_the_cancel_is_refused_and_changes_nothing() -> None:
    s = waiting_for_approval()
    s.when(CancelRun(run_id=R, actor="bob"))
    with pytest.raises(CommandRejected, match="is cancelled; its gates take no more answers"):
        s.when(AnswerGate(step_id="a", actor="ops", groups=("ops",), approve=True))
    assert s.run.status == "cancelled"
