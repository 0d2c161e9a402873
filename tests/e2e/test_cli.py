"""The `playbook` CLI as a user runs it, against an engine in separate processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, playbook_cli
from tests.helpers import until

pytestmark = pytest.mark.e2e


BROKEN = {
    "malformed.yaml": ("name: x\nsteps:\n  - id: a\n    action: noop\n   args: {}\n", ":5:", "[step a]"),
    "unknown-action.yaml": ("name: x\nsteps:\n  - id: a\n    action: noop\n  - id: b\n    action: shel\n",
                            ":6:", "[step b]"),
    "cycle.yaml": ("name: x\nsteps:\n  - id: a\n    action: noop\n    depends_on: [b]\n"
                   "  - id: b\n    action: noop\n    depends_on: [a]\n", ":", "a -> b -> a"),
    "missing-param.yaml": ("name: x\nparameters:\n  - name: target\n    required: true\n"
                           "steps:\n  - id: a\n    action: noop\n", ":3:", "target"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_bad_input_is_refused_with_file_line_and_step_and_nothing_starts(name: str, tmp_path: Path,
                                                                        engine_process: dict[str, str]) -> None:
    text, location, detail = BROKEN[name]
    path = tmp_path / name
    path.write_text(text)
    result = playbook_cli("run", str(path), env=engine_process)    # the engine checks it, and says where
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}{location}" in result.stderr
    if detail:
        assert detail in result.stderr
    listing = playbook_cli("list", "--json", env=engine_process)
    assert (listing.returncode, json.loads(listing.stdout)) == (0, [])


def test_the_engines_warnings_are_printed_at_their_lines_and_the_run_goes_on(tmp_path: Path,
                                                                             engine_process: dict[str, str]) -> None:
    path = tmp_path / "untimed.yaml"
    path.write_text("name: untimed\nsteps:\n  - id: say\n    action: shell\n    args: {command: 'true'}\n")
    result = playbook_cli("run", str(path), env=engine_process)
    assert result.returncode == 0, result.stderr
    assert f"{path}:3:" in result.stderr and "warning PB502 [step say]" in result.stderr
    assert "run completed" in result.stdout


def test_a_missing_file_is_exit_code_2(tmp_path: Path, engine_env: dict[str, str]) -> None:
    result = playbook_cli("run", str(tmp_path / "nope.yaml"), env=engine_env)
    assert result.returncode == 2
    assert "nope.yaml: cannot read" in result.stderr


def test_run_follows_live_and_exits_0_then_status_replay_events_and_list_agree(engine_process: dict[str, str]) -> None:
    result = playbook_cli("run", "examples/hello.yaml", "-p", "who=operator", env=engine_process)
    assert result.returncode == 0, result.stderr
    assert "greet: succeeded" in result.stdout
    assert "run completed" in result.stdout
    assert "4/4" in result.stdout
    run_id = result.stdout.split()[1]

    status = json.loads(playbook_cli("status", run_id, "--json", env=engine_process).stdout)
    assert status["status"] == "completed"
    assert status["steps"][0]["outputs"]["stdout"] == "hello operator"

    events = [json.loads(line) for line in playbook_cli("events", run_id, "--json",
                                                        env=engine_process).stdout.splitlines()]
    assert events[0]["type"] == "RunStarted" and events[-1]["type"] == "RunCompleted"
    assert all(e["run_id"] == run_id for e in events)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)

    replay = playbook_cli("replay", run_id, env=engine_process)
    assert f"run {run_id}: completed" in replay.stdout
    rebuilt = json.loads(playbook_cli("replay", run_id, "--json", env=engine_process).stdout)
    assert rebuilt == status                                   # the state, not the events `events --json` prints

    listing = json.loads(playbook_cli("list", "--json", env=engine_process).stdout)
    assert [(r["run_id"], r["status"]) for r in listing] == [(run_id, "completed")]
    assert playbook_cli("list", "--active", env=engine_process).stdout.strip() == "no active runs"


def test_a_failing_run_exits_1_and_a_cancelled_run_exits_3(engine_process: dict[str, str], tmp_path: Path) -> None:
    failing = tmp_path / "failing.yaml"
    failing.write_text("name: failing\nsteps:\n  - id: boom\n    action: shell\n    args: {command: 'exit 3'}\n"
                       "    timeout_seconds: 5\n")
    result = playbook_cli("run", str(failing), env=engine_process)
    assert result.returncode == 1
    assert "boom: failed" in result.stdout and "exited with code 3" in result.stdout

    slow = tmp_path / "slow.yaml"
    slow.write_text("name: slow\nsteps:\n  - id: wait\n    action: shell\n    args: {command: 'sleep 30'}\n"
                    "    timeout_seconds: 60\n")
    run_id = playbook_cli("run", str(slow), "--detach", env=engine_process).stdout.strip()
    follow = subprocess.Popen(
        [sys.executable, "-m", "ui.cli.main", "events", run_id, "--follow"],
        env=engine_process, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for line in follow.stdout:
        if "StepStarted" in line:
            break
    cancel = playbook_cli("cancel", run_id, "--reason", "test", "--as", "bob", env=engine_process)
    assert cancel.returncode == 0, cancel.stderr
    assert "RunCancelRequested" in cancel.stdout
    rest = follow.stdout.read()
    assert follow.wait(timeout=10) == 0
    assert "cancel requested by tester for bob: test" in rest and "RunCancelled" in rest   # the local admin, for bob
    assert playbook_cli("status", run_id, env=engine_process).stdout.startswith(f"run {run_id}: cancelled")


def test_on_failure_chosen_at_the_start_runs_past_a_failed_step_and_status_says_so(
        engine_process: dict[str, str], tmp_path: Path) -> None:
    book = tmp_path / "patch.yaml"
    book.write_text("name: patch\nsteps:\n  - id: first\n    action: shell\n    args: {command: 'exit 1'}\n"
                    "  - id: second\n    action: noop\n")
    result = playbook_cli("run", str(book), "--on-failure", "continue", "--run-id", "went-on", env=engine_process)
    assert result.returncode == 1, result.stderr         # the run still failed
    assert "second: succeeded" in result.stdout
    status = playbook_cli("status", "went-on", env=engine_process).stdout
    assert "on failure: continue (chosen at the start" in status
    assert "second: succeeded" not in playbook_cli("run", str(book), env=engine_process).stdout   # the playbook's: stop


def test_schema_lists_every_event_and_command() -> None:
    result = playbook_cli("schema", env={**os.environ})
    schema = json.loads(result.stdout)
    assert {"RunStarted", "StepScheduled", "StepStarted", "StepSucceeded", "StepFailed", "StepSkipped", "RunPaused",
            "RunResumed", "RunCancelRequested", "RunCancelled", "RunCompleted", "RunFailed"} <= set(schema["events"])
    assert {"StartRun", "PauseRun", "ResumeRun", "CancelRun"} <= set(schema["commands"])
    assert "actor" in schema["$defs"]["PauseRun"]["properties"]


def test_dry_run_prints_the_plan_and_runs_nothing(engine_process: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    book = tmp_path / "book.yaml"
    book.write_text(f"""name: book
parameters:
  - {{name: environment, default: staging}}
environments:
  production: {{}}
steps:
  - {{id: a, name: A, action: shell, args: {{command: "touch {marker}"}}, timeout_seconds: 5, parallel_group: g}}
  - {{id: b, name: B, action: noop, parallel_group: g}}
  - id: prod
    name: Production only
    action: noop
    when: {{type: equals, left: "${{environment}}", right: production}}
""")
    result = playbook_cli("run", str(book), "--dry-run", env=engine_process)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "nothing was executed" in lines[0]
    assert any(line.split()[:4] == ["1", "a", "shell", "run"] and "parallel group g" in line for line in lines)
    assert any(line.split()[:4] == ["2", "prod", "noop", "skip"] for line in lines)
    assert not marker.exists()
    listing = json.loads(playbook_cli("list", "--json", env=engine_process).stdout)
    assert [(r["status"], r["dry_run"]) for r in listing] == [("completed", True)]


def test_a_breaker_and_every_transition_with_its_reason_are_shown_by_circuits_and_events(
        engine_process: dict[str, str], tmp_path: Path) -> None:
    from services.embedded import free_port
    dead = f"http://127.0.0.1:{free_port()}"               # nothing listens: connection refused
    calling = tmp_path / "calling.yaml"
    calling.write_text(f"name: calling\nsteps:\n  - id: call\n    action: http_request\n    args: {{url: '{dead}/'}}\n"
                       "    timeout_seconds: 5\n    circuit: {failure_threshold: 2, open_seconds: 300}\n")
    outcomes = [playbook_cli("run", str(calling), env=engine_process) for _ in range(3)]
    assert [r.returncode for r in outcomes] == [1, 1, 1]
    assert "circuit" in outcomes[2].stdout and "not called" in outcomes[2].stdout  # the third failed fast

    circuits = playbook_cli("circuits", env=engine_process).stdout
    assert circuits.startswith("open") and dead in circuits and "2 failures in a row" in circuits
    history = playbook_cli("events", "--circuit", dead, env=engine_process)
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert [line.split()[2] for line in lines] == ["CircuitCallFailed", "CircuitCallFailed", "CircuitOpened"]
    assert "OPENED until" in lines[2] and "2 failures in a row, last:" in lines[2]

    reset = playbook_cli("circuits", "--reset", dead, "--as", "oncall", env=engine_process)
    assert reset.returncode == 0, reset.stderr
    last = playbook_cli("events", "--circuit", dead, env=engine_process).stdout.splitlines()[-1]
    assert "RESET by hand by tester for oncall" in last
    unknown = playbook_cli("events", "--circuit", "http://nowhere:1", env=engine_process)
    assert unknown.returncode == 1 and "playbook circuits" in unknown.stderr


def test_a_token_without_the_grant_is_refused_with_exit_5_and_the_admin_reads_why_in_the_audit(
        engine_process: dict[str, str], tmp_path: Path) -> None:
    issued = playbook_cli("token", "create", "vera's laptop", "--owner", "vera", "--grant", "viewer",
                          env=engine_process)
    assert issued.returncode == 0, issued.stderr
    vera = {**engine_process, "PLAYBOOK_TOKEN": issued.stdout.strip()}
    refused = playbook_cli("run", "examples/hello.yaml", "-p", "who=vera", env=vera)
    assert refused.returncode == 5 and "rejected (forbidden): vera may not start hello" in refused.stderr
    on_behalf = playbook_cli("cancel", "some-run", "--as", "bob", env=vera)
    assert on_behalf.returncode == 5 and "only an admin may act on behalf of someone else" in on_behalf.stderr
    bad = playbook_cli("pause", "some-run", env={**engine_process, "PLAYBOOK_TOKEN": "pbt_nope"})
    assert bad.returncode == 5 and "unauthenticated" in bad.stderr
    assert playbook_cli("list", env=vera).returncode == 0                  # reading needs the NATS login only

    audit = playbook_cli("audit", "--action", "refused", "--json", env=engine_process)
    assert audit.returncode == 0, audit.stderr
    seen = [(e["actor"], e["door"], e["detail"].split(" ", 1)[0]) for e in map(json.loads, audit.stdout.splitlines())]
    assert seen == [("anonymous", "cli", "pause"), ("vera", "cli", "cancel"), ("vera", "cli", "start")]
    assert playbook_cli("audit", "--action", "refused", env=vera).stdout.strip() == "no entries match"


async def test_up_keeps_its_home_private_so_a_step_running_as_nobody_reads_none_of_it(
        engine_env: dict[str, str], processes, tmp_path: Path) -> None:
    """Steps of a root engine run as nobody so they cannot read the engine's records; a home of 0755 (made by
    hand, or by a release before this) let them read every run's views and what was learned."""
    home = Path(engine_env["PLAYBOOK_HOME"])
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], engine_env)
    log = next(processes.logs.glob("up-*.log"))
    await until(lambda: "engine ready" in log.read_text(), timeout=20, what="playbook up ready")
    assert home.stat().st_mode & 0o777 == 0o700
    assert "made" in log.read_text() and "private (0700)" in log.read_text()
