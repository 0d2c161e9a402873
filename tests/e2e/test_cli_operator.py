"""The operator's day through the CLI: exit codes as the README says, JSON everywhere, no tracebacks, retry."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, playbook_cli
from tests.integration.test_retry_run import five_steps, ran

pytestmark = pytest.mark.e2e


def test_without_an_engine_the_cli_exits_4_and_says_so_in_json_too(tmp_path: Path) -> None:
    nowhere = {**os.environ, "PLAYBOOK_HOME": str(tmp_path / "empty")}
    nowhere.pop("NATS_URL", None)
    found_none = playbook_cli("status", "run1", env=nowhere)
    assert found_none.returncode == 4 and "no NATS server" in found_none.stderr and "Traceback" not in found_none.stderr
    unreachable = playbook_cli("list", "--json", env={**nowhere, "NATS_URL": "nats://127.0.0.1:1"})
    assert unreachable.returncode == 4
    assert json.loads(unreachable.stdout)["error"]["code"] == "engine_unavailable"


def test_invalid_input_is_2_and_nothing_starts(tmp_path: Path, engine_process: dict[str, str]) -> None:
    env = {**os.environ, "NATS_URL": "nats://127.0.0.1:1"}      # no engine needed to refuse these
    assert playbook_cli("run", "examples/hello.yaml", "-p", "oops", env=env).returncode == 2
    assert playbook_cli("status", env=env).returncode == 2     # a usage error
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - id: a\n    action: shel\n")
    refused = playbook_cli("run", str(bad), "--json", env=engine_process)     # the engine's checks, once
    assert refused.returncode == 2
    assert "PB206" in [d["code"] for d in json.loads(refused.stdout)["error"]["details"]]
    assert json.loads(playbook_cli("list", "--json", env=engine_process).stdout) == []


def test_a_closed_pipe_ends_the_cli_quietly_with_141() -> None:
    piped = subprocess.run(f"{sys.executable} -m ui.cli.main schema | head -n 1; exit ${{PIPESTATUS[0]}}", shell=True,
                           cwd=ROOT, capture_output=True, text=True, executable="/bin/bash")
    assert piped.stdout == "{\n" and piped.returncode == 141
    assert piped.stderr == ""


def test_the_operators_commands_answer_in_json_and_exit_as_promised(engine_process: dict[str, str],
                                                                      tmp_path: Path) -> None:
    detached = playbook_cli("run", "examples/hello.yaml", "-p", "who=json", "--detach", "--json", env=engine_process)
    answer = json.loads(detached.stdout)
    assert answer["accepted"] and answer["events"][0]["type"] == "RunStarted"
    run_id = answer["run_id"]
    until_done = playbook_cli("events", run_id, "--follow", "--json", env=engine_process)
    lines = [json.loads(line) for line in until_done.stdout.splitlines()]
    assert lines[-1]["type"] == "RunCompleted"

    status = playbook_cli("status", run_id, env=engine_process)
    assert "| hello json" in status.stdout                       # what the step printed, under it
    rejected = playbook_cli("pause", run_id, "--json", env=engine_process)
    assert rejected.returncode == 1 and json.loads(rejected.stdout)["error"]["code"] == "illegal_transition"
    unknown = playbook_cli("status", "nosuchrun", "--json", env=engine_process)
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["error"]["code"] == "unknown_run"

    piped = subprocess.run(f"{sys.executable} -m ui.cli.main events {run_id} --json | head -n 1", shell=True,
                           cwd=ROOT, capture_output=True, text=True, env=engine_process)
    assert json.loads(piped.stdout)["type"] == "RunStarted" and "Traceback" not in piped.stderr

    slow = tmp_path / "slow.yaml"
    slow.write_text("name: slow\nsteps:\n  - id: nap\n    action: shell\n    args: {command: 'sleep 30'}\n"
                    "    timeout_seconds: 60\n")
    following = subprocess.Popen([sys.executable, "-m", "ui.cli.main", "run", str(slow)], env=engine_process,
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in following.stdout:
        if "nap: attempt 1 started" in line:
            break
    following.send_signal(signal.SIGINT)
    assert following.wait(timeout=10) == 130
    assert "Traceback" not in following.stderr.read()


def test_retry_after_the_missing_file_is_created_reruns_steps_3_to_5_then_rollback_undoes_all(
        engine_process: dict[str, str], tmp_path: Path) -> None:
    book = tmp_path / "five.yaml"
    book.write_text(five_steps(tmp_path))
    failed = playbook_cli("run", str(book), env=engine_process)
    assert failed.returncode == 1 and "install: failed" in failed.stdout
    assert "! cp: cannot stat" in failed.stdout                    # what the step said, under its line
    run_id = failed.stdout.split()[1]

    (tmp_path / "release.tar").write_text("the release")
    issued = playbook_cli("token", "create", "vic's laptop", "--owner", "vic", "--grant", "viewer", env=engine_process)
    vic = {**engine_process, "PLAYBOOK_TOKEN": issued.stdout.strip()}
    looking = playbook_cli("retry", run_id, "--json", env=vic)
    refusal = json.loads(looking.stdout)["error"]
    assert looking.returncode == 5 and refusal["code"] == "forbidden"
    assert f"vic may not retry run {run_id} of five" in refusal["message"]
    assert ran(tmp_path) == ["fetch", "unpack", "install"]                   # a viewer's retry ran nothing
    retried = playbook_cli("retry", run_id, "--reason", "release restored", "--as", "olga", env=engine_process)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "retried by tester for olga: install, migrate, announce run again; release restored" in retried.stdout
    assert "run completed" in retried.stdout and "fetch: succeeded" not in retried.stdout
    assert ran(tmp_path) == ["fetch", "unpack", "install", "install", "migrate", "announce"]

    events = [json.loads(line) for line in playbook_cli("events", run_id, "--json", env=engine_process).stdout
              .splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds.count("RunRetried") == 1 and kinds[kinds.index("RunRetried"):].count("RunCompleted") == 1
    nothing = playbook_cli("retry", run_id, "--json", env=engine_process)          # completed: nothing to retry
    assert nothing.returncode == 1 and json.loads(nothing.stdout)["error"]["code"] == "illegal_transition"

    undone = playbook_cli("rollback", run_id, "--follow", "--reason", "wrong release", env=engine_process)
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert ran(tmp_path, "undone") == ["announce", "migrate", "install", "unpack", "fetch"]
