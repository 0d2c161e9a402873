"""What the CLI shows of a run: the last lines each step printed, all of them with --output; where a gate stands."""
from __future__ import annotations

import io

from events.run import ApprovalDeadlinePassed, StepFailed, StepSucceeded
from services.domain.run.commands import AnswerGate, ExpireGate
from services.domain.run.state import fold
from tests.helpers import R, Scenario, at, noop, started
from projections.run_list import RunSummary
from services.domain.breaker import Breaker
from ui.cli.render import TAIL_LINES, Follower, breaker_line, list_line, output_lines, status_table

LONG = "\n".join(f"line {n}" for n in range(1, 13)) + "\n"


def test_a_step_line_is_followed_by_the_last_lines_it_printed_and_how_many_came_before() -> None:
    out = io.StringIO()
    follower = Follower(R, out=out)
    follower.show(1, started(R, [noop("build")]))
    follower.show(2, StepSucceeded(run_id=R, at=at(1), step_id="build", attempt=1,
                                   outputs={"stdout": LONG, "stderr": "warning: cache cold\n", "returncode": 0}))
    lines = out.getvalue().splitlines()
    assert lines[1].endswith("build: succeeded in 0 ms")
    assert [line.strip() for line in lines[2:]] == [
        "| ... 7 earlier line(s); --output shows all", "| line 8", "| line 9", "| line 10", "| line 11", "| line 12",
        "! warning: cache cold"]


def test_with_output_every_line_is_shown() -> None:
    assert [line.strip() for line in output_lines({"stdout": LONG}, full=True)] == [
        f"| line {n}" for n in range(1, 13)]
    assert len(output_lines({"stdout": LONG})) == TAIL_LINES + 1


def test_a_failed_http_step_shows_its_body_and_a_silent_step_nothing() -> None:
    out = io.StringIO()
    follower = Follower(R, out=out)
    follower.show(1, started(R, [noop("call"), noop("quiet")]))
    follower.show(2, StepFailed(run_id=R, at=at(1), step_id="call", attempt=1, category="temporary",
                                error="GET http://db:80/health returned HTTP 503", outputs={
                                    "status_code": 503, "body": '{"status": "degraded"}'}))
    follower.show(3, StepSucceeded(run_id=R, at=at(2), step_id="quiet", attempt=1, outputs={"stdout": ""}))
    lines = out.getvalue().splitlines()
    assert lines[2].strip() == '| {"status": "degraded"}'
    assert len(lines) == 4


def test_status_shows_each_steps_last_lines_under_it() -> None:
    s = Scenario(started(R, [noop("a"), noop("b")]))
    s.start()
    s.run_step("a", stdout=LONG)
    table = status_table(fold(R, list(enumerate(s.events, 1))))
    assert "    | line 12" in table and "line 7\n" not in table
    assert "    | line 1\n" in status_table(s.run, full_output=True)


def gated_deploy(**gate) -> Scenario:
    """build ran; deploy waits for bob's approval."""
    s = Scenario(started(R, [noop("build"), noop("deploy", approval_gate={"required_approvers": ["bob"], **gate})]))
    s.start()
    s.run_step("build")
    return s


def deploy_line(s: Scenario) -> str:
    """The deploy step's line in `status`, from the stored events."""
    table = status_table(fold(R, list(enumerate(s.events, 1))))
    return next(line.strip() for line in table.splitlines() if line.strip().startswith("deploy "))


def test_a_rejected_gate_says_who_rejected_it_and_why() -> None:
    s = gated_deploy()
    s.when(AnswerGate(step_id="deploy", actor="bob", groups=(), approve=False, comment="not during the freeze"))
    line = deploy_line(s)
    assert line.endswith("gate rejected by bob: not during the freeze")
    assert "nobody yet" not in line and line.count("rejected") == 1


def test_a_gate_rejected_by_an_admin_for_someone_names_the_person_it_counts_for() -> None:
    s = gated_deploy()
    s.when(AnswerGate(step_id="deploy", actor="ada", groups=(), approve=False, on_behalf_of="bob"))
    assert s.run.steps["deploy"].gate.decided_by == ["bob"]
    assert deploy_line(s).endswith("gate rejected by bob")


def test_a_waiting_gate_says_who_approved_it_so_far_and_a_granted_one_who_opened_it() -> None:
    s = gated_deploy(timeout_seconds=5, auto_approve_after_timeout=True)
    assert deploy_line(s).endswith("gate requested (approved by nobody yet, waits until 2026-01-01 12:00:15Z)")
    s.given(ApprovalDeadlinePassed(run_id=R, at=at(15), step_id="deploy"))
    s.when(ExpireGate("deploy"))
    assert "gate granted (approved by system)" in deploy_line(s)


FORGING = ("\x1b[31mdegraded\x1b[0m\n\x1b]0;pwned\x07\x1b[2J\x07\x1b[32mok\x1b[0m\n"
           "deploy: failed\r\x1b[1A\x1b[2Kdeploy: succeeded\n")


def test_what_a_step_printed_cannot_move_the_cursor_retitle_or_clear_the_terminal_but_keeps_its_colours() -> None:
    out = io.StringIO()
    follower = Follower(R, out=out, full_output=True)
    follower.show(1, started(R, [noop("deploy")]))
    follower.show(2, StepFailed(run_id=R, at=at(1), step_id="deploy", attempt=1, category="unknown",
                                error="command exited with code 1: boom\r\x1b[1A\x1b[2Krun completed",
                                outputs={"stdout": FORGING}))
    shown = out.getvalue()
    table = status_table(follower.run, full_output=True)
    for text in (shown, table + "\n"):
        assert "\x1b[31mdegraded\x1b[0m" in text                        # colours pass
        assert "| \\x1b]0;pwned\\x07\\x1b[2J\\x07\x1b[32mok\x1b[0m\n" in text
        assert "| \\x1b[1A\\x1b[2Kdeploy: succeeded\n" in text
        assert "code 1: boom\\r\\x1b[1A\\x1b[2Krun completed" in text
        assert not set(text) & {"\r", "\x07"} and text.count("\x1b") == 4


def test_a_playbook_named_with_escape_sequences_is_listed_escaped() -> None:
    run = RunSummary(run_id="r1", playbook="deploy\x1b[2J\x1b]0;pwned\x07", status="running", actor="sam",
                     started_at=at(0))
    assert list_line(run).split()[-3:] == ["deploy\\x1b[2J\\x1b]0;pwned\\x07", "by", "sam"]


def test_an_open_breaker_past_its_open_time_says_the_next_call_tests_the_target() -> None:
    b = Breaker(key="http://db:80", state="open", failures=3, until=at(30), reason="refused")
    assert breaker_line(b, at(10)) == "open         3 failures in a row  http://db:80 until 12:00:30Z  (refused)"
    assert breaker_line(b, at(31)).endswith(" until 12:00:30Z, over: the next call tests the target  (refused)")
    assert breaker_line(Breaker(key="k\x1b[2J"), at(0)) == "closed       0 failures in a row  k\\x1b[2J"


def test_a_catalogued_playbooks_description_is_listed_escaped(capsys) -> None:
    """Its text is the publisher's: `ESC]0;` retitled the window of whoever ran `playbook playbooks`."""
    from events.catalog import PlaybookPublished
    from ui.cli.catalog import _show_catalog
    version = PlaybookPublished(name="esc", at=at(0), version="1", digest="sha256:0", parsed="sha256:1", actor="root",
                                bytes=1, steps=1, description="evil \x1b]0;pwned\x07 \x1b[31mred\x1b[0m")
    _show_catalog([(version, ["1"])], as_json=False)
    assert capsys.readouterr().out.splitlines()[1].endswith("evil \\x1b]0;pwned\\x07 \x1b[31mred\x1b[0m")
