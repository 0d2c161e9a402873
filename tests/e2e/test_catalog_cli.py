"""The catalog from the `playbook` CLI, against an engine in its own process: publish, list, diff and run by
name; a changed file cannot reuse a version; large playbooks run by reference, too-large ones are refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.playbook import MAX_BYTES
from tests.e2e.conftest import Processes, playbook_cli
from tests.helpers import until

pytestmark = pytest.mark.e2e

DEPLOY = """name: deploy-web
description: Roll out the web tier.
version: "1.0"
steps:
  - id: check
    action: noop
  - id: roll
    action: noop
"""


@pytest.fixture
async def engine_process(engine_env: dict[str, str], processes: Processes) -> dict[str, str]:
    """`playbook up` on the test's nats-server; returns the environment for CLI calls."""
    processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], engine_env)
    log = next(processes.logs.glob("up-*.log"))
    await until(lambda: "engine ready" in log.read_text(), timeout=30, what="playbook up ready")
    return engine_env


def test_publish_list_diff_and_run_by_name_each_run_pinning_its_version(engine_process, tmp_path: Path) -> None:
    env, book = engine_process, tmp_path / "deploy.yaml"
    book.write_text(DEPLOY)
    first = playbook_cli("publish", str(book), "--as", "pat", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("published deploy-web@1.0 sha256:") and "(2 steps" in first.stdout
    otto = playbook_cli("token", "create", "otto's", "--owner", "otto", "--grant", "operator", env=env).stdout.strip()
    refused = playbook_cli("publish", str(book), env={**env, "PLAYBOOK_TOKEN": otto})
    assert refused.returncode == 5 and "otto may not publish playbooks" in refused.stderr, refused.stderr
    again = playbook_cli("publish", str(book), env=env)
    assert (again.returncode, again.stdout.split()[:3]) == (0, ["already", "published:", "deploy-web@1.0"])

    book.write_text(DEPLOY.replace("  - id: roll", "  - id: drain\n    action: noop\n  - id: roll"))
    changed = playbook_cli("publish", str(book), env=env)
    assert changed.returncode == 1 and "Traceback" not in changed.stderr
    assert "deploy-web@1.0 is already published with other content" in changed.stderr
    assert "--version 1.1" not in changed.stderr          # the flag is named, not guessed at
    conflicting = playbook_cli("publish", str(book), "--version", "1.1", env=env)
    assert conflicting.returncode == 2 and "says `version: 1.0` but the publish asks for 1.1" in conflicting.stderr
    book.write_text(book.read_text().replace('version: "1.0"', 'version: "1.1"'))
    second = playbook_cli("publish", str(book), "--as", "quinn", env=env)
    assert second.returncode == 0 and "deploy-web@1.1" in second.stdout, second.stderr

    listing = json.loads(playbook_cli("playbooks", "--json", env=env).stdout)
    deploy = next(p for p in listing if p["name"] == "deploy-web")
    assert (deploy["version"], deploy["versions"], deploy["author"]) == ("1.1", ["1.1", "1.0"], "quinn")
    assert {"hello", "deploy-demo"} <= {p["name"] for p in listing}        # the examples, published at start
    versions = playbook_cli("playbooks", "deploy-web", env=env).stdout.splitlines()
    assert [line.split()[0] for line in versions] == ["VERSION", "1.1", "1.0"]
    diff = playbook_cli("playbooks", "diff", "deploy-web", "1.0", "1.1", env=env).stdout
    assert "--- deploy-web@1.0" in diff and '-version: "1.0"' in diff and "+  - id: drain" in diff
    assert playbook_cli("playbooks", "show", "deploy-web@1.0", env=env).stdout == DEPLOY

    pins = {}
    for reference in ("deploy-web@1.0", "deploy-web"):
        run = playbook_cli("run", reference, env=env)
        assert run.returncode == 0 and "run completed" in run.stdout, run.stderr
        status = json.loads(playbook_cli("status", run.stdout.split()[1], "--json", env=env).stdout)
        pins[reference] = (status["playbook_version"], status["playbook_digest"], len(status["steps"]))
    assert pins["deploy-web@1.0"][0::2] == ("1.0", 2) and pins["deploy-web"][0::2] == ("1.1", 3)
    assert pins["deploy-web@1.0"][1] in first.stdout and pins["deploy-web"][1] in second.stdout
    unknown = playbook_cli("run", "deploy-web@9", env=env)
    assert unknown.returncode == 2 and "deploy-web has versions 1.0, 1.1" in unknown.stderr
    for words in (["nosuch"], ["show", "nosuch"]):            # an unknown name is invalid input, whatever asks
        nosuch = playbook_cli("playbooks", *words, env=env)
        assert nosuch.returncode == 2 and "no playbook 'nosuch'" in nosuch.stderr, (words, nosuch.stderr)


def test_a_playbook_larger_than_a_message_starts_from_the_cli_by_reference_and_runs_to_completion(
        engine_process, tmp_path: Path) -> None:
    """300 steps and 1.5 MB of YAML, more than one NATS message holds: uploaded, pinned, resolved by every
    service. (`python -m bench huge` does the same with 10,000 steps and measures it.)"""
    book = tmp_path / "huge.yaml"
    book.write_text("name: huge\ndescription: " + "many words " * 140_000 + "\nsteps:\n" + "".join(
        f"  - id: s{i:05d}\n    name: step {i:05d} of a large generated playbook, padded to a realistic size\n"
        f"    action: noop\n    parallel_group: g{i // 50}\n    args: {{outputs: {{n: {i}}}}}\n"
        for i in range(300)))
    assert book.stat().st_size > 1.5 * 2**20
    result = playbook_cli("run", str(book), "--detach", env=engine_process, timeout=120)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    follow = playbook_cli("events", run_id, "--follow", "--json", env=engine_process, timeout=600)
    events = [json.loads(line) for line in follow.stdout.splitlines()]
    assert events[-1]["type"] == "RunCompleted"
    assert sum(e["type"] == "StepSucceeded" for e in events) == 300
    started = events[0]
    assert started["pin"]["steps"] == 300 and "playbook" not in started and len(json.dumps(started)) < 2_000
    status = json.loads(playbook_cli("status", run_id, "--json", env=engine_process, timeout=60).stdout)
    assert status["status"] == "completed" and len(status["steps"]) == 300


def test_a_playbook_past_the_size_limit_is_refused_plainly_and_nothing_starts(engine_process, tmp_path: Path) -> None:
    book = tmp_path / "too-big.yaml"
    book.write_text("name: too-big\nsteps:\n  - {id: a, action: noop}\n# " + "x" * MAX_BYTES + "\n")
    for command in (["run", str(book)], ["publish", str(book)]):
        result = playbook_cli(*command, env=engine_process, timeout=120)
        assert result.returncode == 2, (command, result.stderr)
        assert "Traceback" not in result.stderr and "MaxPayload" not in result.stderr
        assert f"{MAX_BYTES:,} bytes one playbook may be" in result.stderr     # just over: said in bytes
    assert json.loads(playbook_cli("list", "--json", env=engine_process).stdout) == []


def test_a_file_past_the_size_limit_is_refused_by_name_and_the_other_files_are_published(engine_process,
                                                                                          tmp_path: Path) -> None:
    """Each file of a publish is answered on its own: one too large stops neither the files after it nor the
    sentence that names it."""
    big, after = tmp_path / "too-big.yaml", tmp_path / "after.yaml"
    big.write_text("name: too-big\nsteps:\n  - {id: a, action: noop}\n# " + "x" * MAX_BYTES + "\n")
    after.write_text(DEPLOY)
    result = playbook_cli("publish", str(big), str(after), env=engine_process, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"{big}: not published (too_large): " in result.stderr
    assert "published deploy-web@1.0" in result.stdout
