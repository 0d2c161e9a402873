"""Every path to a run's end writes exactly one terminal event per ending, the one its status names.

The contract (events/run.py): a run ends with one of RunCompleted, RunFailed, RunCancelled,
RollbackCompleted, RollbackFailed; a RollbackStarted written after an end reopens it, and it then
ends again with one new terminal event. Scenario checks the same after every event of every
decider test; this table walks each way a run can end.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest

from events.commands import CancelRun, PauseRun, RollbackRun
from events.run import (
    ENDINGS, REOPENING_EVENTS, TERMINAL_EVENTS, ApprovalDeadlinePassed, RollbackStarted, RunCompleted, RunEvent,
    RunFailed, ended_after,
)
from services.domain.run.commands import AnswerGate, ExpireGate
from tests.helpers import R, Scenario, at, noop, started


def undo(step_id: str, **extra) -> dict:
    return noop(step_id, rollback=[{"action": "shell", "args": {"command": f"undo {step_id}"}}], **extra)


def gated(step_id: str, **gate) -> dict:
    return noop(step_id, approval_gate={"required_approvers": ["ops-team"], **gate})


def forward(*steps: dict, **top) -> Scenario:
    s = Scenario(started(R, list(steps), **top))
    s.start()
    return s


def succeeds() -> Scenario:
    s = forward(noop("a"), noop("b"))
    s.run_step("a"), s.run_step("b")
    return s


def fails() -> Scenario:
    s = forward(noop("a"), noop("b"))
    s.run_step("a"), s.begin("b")
    s.fail("b")
    return s


def cancelled_while_a_step_runs() -> Scenario:
    s = forward(noop("a"))
    s.begin("a")
    s.when(CancelRun(run_id=R, actor="ops"))
    s.fail("a", "killed", category="cancelled")
    return s


def cancelled_while_paused() -> Scenario:
    s = forward(noop("a"), noop("b"))
    s.when(PauseRun(run_id=R, actor="ops"))
    s.run_step("a")
    s.when(CancelRun(run_id=R, actor="ops"))
    return s


def rejected_at_the_gate() -> Scenario:
    s = forward(gated("deploy"))
    s.when(AnswerGate(step_id="deploy", actor="alice", groups=("ops-team",), approve=False))
    return s


def cancelled_at_a_gate_then_its_deadline_fires() -> Scenario:
    s = forward(gated("deploy", timeout_seconds=60))
    s.when(CancelRun(run_id=R, actor="ops"))
    s.given(ApprovalDeadlinePassed(run_id=R, at=at(70), step_id="deploy"))    # the timer, stored late
    s.when(ExpireGate(step_id="deploy"))
    return s


def rolled_back_on_failure() -> Scenario:
    s = forward(undo("a"), undo("b"), noop("c"), on_failure="rollback")
    s.run_step("a"), s.run_step("b"), s.begin("c")
    s.fail("c")
    for step in ("b", "a"):
        s.begin_rollback(step)
        s.finish_rollback(step)
    return s


def rollback_on_failure_fails() -> Scenario:
    s = forward(undo("a"), noop("b"), on_failure="rollback")
    s.run_step("a"), s.begin("b")
    s.fail("b")
    s.begin_rollback("a")
    s.finish_rollback("a", error="undo a: exit 1")
    return s


def timed_out_at_the_gate_and_rolled_back() -> Scenario:
    s = forward(undo("prepare"), gated("deploy", timeout_seconds=1), on_failure="rollback")
    s.run_step("prepare")
    s.given(ApprovalDeadlinePassed(run_id=R, at=at(20), step_id="deploy"))
    s.when(ExpireGate(step_id="deploy"))
    s.begin_rollback("prepare")
    s.finish_rollback("prepare")
    return s


def completed_then_rolled_back_by_hand() -> Scenario:
    s = forward(undo("a"))
    s.run_step("a")
    s.when(RollbackRun(run_id=R, actor="ops"))
    s.begin_rollback("a")
    s.finish_rollback("a")
    return s


def fails_with_undo() -> Scenario:
    s = forward(undo("a"), noop("b"))
    s.run_step("a"), s.begin("b")
    s.fail("b")
    return s


def failed_then_rollback_fails_then_rolled_back_again() -> Scenario:
    s = fails_with_undo()
    s.when(RollbackRun(run_id=R, actor="ops"))
    s.begin_rollback("a")
    s.finish_rollback("a", error="undo a: exit 1")
    s.when(RollbackRun(run_id=R, actor="ops", reason="try again"))
    s.begin_rollback("a")
    s.finish_rollback("a")
    return s


def cancelled_during_the_rollback() -> Scenario:
    s = forward(undo("a"), undo("b"), noop("c"), on_failure="rollback")
    s.run_step("a"), s.run_step("b"), s.begin("c")
    s.fail("c")
    s.begin_rollback("b")
    s.when(CancelRun(run_id=R, actor="ops"))
    s.finish_rollback("b", error="killed", category="cancelled")
    return s


def cancelled_while_a_step_runs_with_undo() -> Scenario:
    s = forward(undo("a"), noop("b"))
    s.run_step("a"), s.begin("b")
    s.when(CancelRun(run_id=R, actor="ops"))
    s.fail("b", "killed", category="cancelled")
    return s


def cancelled_then_rolled_back_by_hand_and_cancelled_again() -> Scenario:
    s = cancelled_while_a_step_runs_with_undo()
    s.when(RollbackRun(run_id=R, actor="ops"))
    s.begin_rollback("a")
    s.when(CancelRun(run_id=R, actor="ops"))
    s.finish_rollback("a", error="killed", category="cancelled")
    return s


def a_dry_run() -> Scenario:
    s = Scenario(started(R, [noop("a"), undo("b")], dry_run=True))
    s.start()
    return s


PATHS: list[tuple[Callable[[], Scenario], list[str]]] = [
    (succeeds, ["RunCompleted"]),
    (fails, ["RunFailed"]),
    (cancelled_while_a_step_runs, ["RunCancelled"]),
    (cancelled_while_paused, ["RunCancelled"]),
    (rejected_at_the_gate, ["RunFailed"]),
    (cancelled_at_a_gate_then_its_deadline_fires, ["RunCancelled"]),
    (rolled_back_on_failure, ["RollbackCompleted"]),
    (rollback_on_failure_fails, ["RollbackFailed"]),
    (timed_out_at_the_gate_and_rolled_back, ["RollbackCompleted"]),
    (completed_then_rolled_back_by_hand, ["RunCompleted", "RollbackCompleted"]),
    (failed_then_rollback_fails_then_rolled_back_again, ["RunFailed", "RollbackFailed", "RollbackCompleted"]),
    (cancelled_during_the_rollback, ["RunCancelled"]),
    (cancelled_then_rolled_back_by_hand_and_cancelled_again, ["RunCancelled", "RunCancelled"]),
    (a_dry_run, ["RunCompleted"]),
]


@pytest.mark.parametrize(("path", "endings"), PATHS, ids=[path.__name__ for path, _ in PATHS])
def test_each_ending_writes_exactly_one_terminal_event(path: Callable[[], Scenario], endings: list[str]) -> None:
    s = path()
    history = s.events
    assert [type(e).__name__ for e in history if isinstance(e, TERMINAL_EVENTS)] == endings
    reopened = [e for i, e in enumerate(history)
                if isinstance(e, REOPENING_EVENTS) and any(isinstance(p, TERMINAL_EVENTS) for p in history[:i])]
    assert len(endings) == 1 + len(reopened)
    last_ending = [e for e in history if isinstance(e, TERMINAL_EVENTS)][-1]
    assert s.run.finished and s.run.status == ENDINGS[type(last_ending)]
    assert _ended(history) and not _ended(history[:history.index(last_ending)])


def test_a_reopened_run_has_not_ended_until_its_new_terminal_event() -> None:
    s = completed_then_rolled_back_by_hand()
    reopening = next(i for i, e in enumerate(s.events) if isinstance(e, RollbackStarted))
    assert _ended(s.events[:reopening]) and not _ended(s.events[:reopening + 1])
    assert not _ended(s.events[:-1]) and _ended(s.events)


def test_records_after_an_end_do_not_reopen_it() -> None:
    s = cancelled_at_a_gate_then_its_deadline_fires()
    assert type(s.events[-1]).__name__ == "ApprovalDeadlinePassed"
    assert _ended(s.events) and s.run.status == "cancelled"


def test_the_endings_name_the_statuses_a_finished_run_has() -> None:
    from services.read import FINISHED_RUN
    assert set(ENDINGS.values()) == FINISHED_RUN
    assert {RunCompleted, RunFailed} <= set(TERMINAL_EVENTS)


def _ended(events: list[RunEvent]) -> bool:
    ended = False
    for event in events:
        ended = ended_after(ended, event)
    return ended
