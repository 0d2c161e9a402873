"""A run's failure and its rollback, told apart: in the fold, the status the CLI prints and the run's view."""
from __future__ import annotations

import io

from events.commands import CancelRun, RollbackRun
from projections.run_view import run_view
from projections.sentences import sentence
from services.domain.run.commands import FinishStep
from services.domain.run.state import RollbackRequest, fold
from tests.helpers import R, Scenario, noop, started
from ui.cli.render import Follower, status_table

STEP_B_FAILED = "step b failed: command exited with code 1"


def undo(step_id: str) -> dict:
    return noop(step_id, rollback=[{"action": "shell", "args": {"command": f"undo {step_id}"}}])


def failed_at_b(**top) -> Scenario:
    """Step a, which can be undone, succeeded; step b exited 1: the run failed."""
    s = Scenario(started(R, [undo("a"), noop("b")], **top))
    s.start()
    s.run_step("a"), s.begin("b")
    s.fail("b", "command exited with code 1")
    return s


def rolled_back(s: Scenario, actor: str = "root", reason: str = "", rollback_error: str = "") -> Scenario:
    s.when(RollbackRun(run_id=R, actor=actor, reason=reason))
    s.begin_rollback("a")
    s.finish_rollback("a", error=rollback_error)
    return s


def refolded(s: Scenario):
    """The run as a reader rebuilds it from the stored events alone (status, replay)."""
    return fold(R, list(enumerate(s.events, 1)))


def test_a_rollback_by_hand_keeps_the_failure_and_says_its_own_reason_and_who_asked() -> None:
    s = failed_at_b()
    assert (s.run.status, s.run.failure) == ("failed", STEP_B_FAILED)
    rolled_back(s, reason="bad deploy")
    for run in (s.run, refolded(s)):
        assert (run.status, run.failure) == ("rolled_back", STEP_B_FAILED)
        assert run.rollback == RollbackRequest(reason="bad deploy", actor="root")
    table = status_table(refolded(s)).splitlines()
    assert f"failure: {STEP_B_FAILED}" in table
    assert "rolled back: bad deploy (requested by root)" in table
    assert not any(line.startswith("failure: bad deploy") for line in table)


def test_a_completed_run_rolled_back_by_hand_has_no_failure() -> None:
    s = Scenario(started(R, [undo("a"), noop("b")]))
    s.start()
    s.run_step("a"), s.run_step("b")
    rolled_back(s, actor="ops", reason="wrong release")
    run = refolded(s)
    assert (run.status, run.failure) == ("rolled_back", "")
    table = status_table(run)
    assert "failure:" not in table and "rolled back: wrong release (requested by ops)" in table.splitlines()
    view = run_view(run)
    assert (view["failure"], view["rollback_requested_by"], view["rollback_reason"]) == (None, "ops", "wrong release")


def test_a_rollback_under_on_failure_rollback_keeps_the_failure_it_was_started_for() -> None:
    s = Scenario(started(R, [undo("a"), noop("b")], on_failure="rollback"))
    s.start()
    s.run_step("a"), s.begin("b")
    s.fail("b", "command exited with code 1")
    s.begin_rollback("a")
    s.finish_rollback("a")
    run = refolded(s)
    assert (run.status, run.failure) == ("rolled_back", STEP_B_FAILED)
    assert run.rollback == RollbackRequest(reason=STEP_B_FAILED, actor="system", after_failure=True)
    assert "rolled back after the failure (on failure: rollback)" in status_table(run).splitlines()


def test_a_failed_rollback_says_why_apart_from_the_failure_it_undid() -> None:
    s = rolled_back(failed_at_b(), reason="bad deploy", rollback_error="undo a: exit 1")
    run = refolded(s)
    assert (run.status, run.failure) == ("rollback_failed", STEP_B_FAILED)
    assert run.rollback is not None and run.rollback.failure == "rollback of a failed: undo a: exit 1"
    table = status_table(run).splitlines()
    assert [line for line in table if not line.startswith(" ")][-4:] == [
        f"failure: {STEP_B_FAILED}", "rollback: bad deploy (requested by root)",
        "rollback failed: rollback of a failed: undo a: exit 1",
        f"not undone: a (failed); `playbook rollback {R}` tries them again"]
    view = run_view(run)
    assert (view["failure"], view["rollback_failure"]) == (STEP_B_FAILED, "rollback of a failed: undo a: exit 1")


def test_rolling_back_again_after_a_failed_rollback_keeps_the_failure_and_takes_the_new_request() -> None:
    s = rolled_back(failed_at_b(), reason="bad deploy", rollback_error="undo a: exit 1")
    s.when(RollbackRun(run_id=R, actor="lead", on_behalf_of="olga", reason="try again"))
    run = refolded(s)
    assert (run.status, run.failure) == ("rolling_back", STEP_B_FAILED)
    assert run.rollback == RollbackRequest(reason="try again", actor="lead", on_behalf_of="olga")
    assert "rolling back: try again (requested by lead for olga)" in status_table(run).splitlines()


def test_a_rollback_asked_for_without_a_reason_records_none_and_says_who_asked() -> None:
    s = Scenario(started(R, [undo("a"), noop("b")]))
    s.start()
    s.run_step("a"), s.run_step("b")
    (asked, _) = s.when(RollbackRun(run_id=R, actor="root"))
    assert asked.reason == "" and sentence(asked) == "rollback by root: a"
    assert "rolling back (requested by root)" in status_table(refolded(s)).splitlines()


def test_what_a_rollback_action_printed_is_shown_under_its_step_and_as_it_happens() -> None:
    s = failed_at_b()
    s.when(RollbackRun(run_id=R, actor="root"))
    s.begin_rollback("a")
    s.when(FinishStep(step_id="a", attempt=s.run.steps["a"].rollback.attempt, outputs=[{"stdout": "undid a\n"}],
                      duration_ms=1.0, rollback=True))
    shown = status_table(refolded(s)).splitlines()
    at = shown.index("    rollback action 1:")
    assert shown[at - 1].split()[:2] == ["a", "succeeded"] and shown[at - 1].endswith("rollback rolled_back")
    assert shown[at + 1] == "      | undid a"
    followed = io.StringIO()
    follower = Follower(R, out=followed)
    for seq, event in enumerate(s.events, 1):
        follower.show(seq, event)
    assert "rollback action 1:\n" in followed.getvalue() and "| undid a\n" in followed.getvalue()


def test_a_step_rolled_back_on_its_second_try_no_longer_shows_why_the_first_stopped() -> None:
    s = failed_at_b()
    s.when(RollbackRun(run_id=R, actor="root"))
    s.begin_rollback("a")
    s.finish_rollback("a", error="executor ex1 stopped renewing its lease", category="interrupted")
    assert (s.run.steps["a"].rollback.attempt, s.run.steps["a"].rollback.error) == (
        2, "executor ex1 stopped renewing its lease")        # tried again, saying why meanwhile
    s.begin_rollback("a")
    s.finish_rollback("a")
    run = refolded(s)
    assert (run.status, run.steps["a"].rollback.status, run.steps["a"].rollback.error) == ("rolled_back",
                                                                                           "rolled_back", "")
    line, = (line for line in status_table(run).splitlines() if line.startswith("  a "))
    assert line.endswith("rollback rolled_back") and run_view(run)["steps"][0]["rollback_error"] is None


def test_a_rollback_cancelled_half_way_says_what_it_left_undone() -> None:
    s = Scenario(started(R, [undo("a"), undo("b"), undo("c"), noop("d")], on_failure="rollback"))
    s.start()
    s.run_step("a"), s.run_step("b"), s.run_step("c"), s.begin("d")
    s.fail("d")
    s.begin_rollback("c"), s.finish_rollback("c")
    s.begin_rollback("b")
    s.when(CancelRun(run_id=R, actor="ops"))
    s.finish_rollback("b", error="cancelled while running", category="cancelled")
    table = status_table(refolded(s)).splitlines()
    assert f"not undone: b (failed), a (not tried); `playbook rollback {R}` tries them again" in table
