"""A run that failed at its third step because a file was missing: create it, retry, and it goes on from there."""
from __future__ import annotations

from pathlib import Path

import pytest

from events.commands import CancelRun, RetryRun, RollbackRun, StartRun
from events.run import TERMINAL_EVENTS, RunRetried, StepStarted
from tests.helpers import wait_for_end

pytestmark = pytest.mark.integration


def five_steps(work: Path) -> str:
    """Five shell steps that each note that they ran (and, undone, that they were undone); the third
    copies a release file that is not there yet."""
    def step(name: str, command: str) -> str:
        return f"""
  - id: {name}
    action: shell
    args: {{command: "echo {name} >> {work}/ran; {command}"}}
    timeout_seconds: 10
    outputs: [{{name: said, from: stdout}}]
    rollback:
      - {{action: shell, args: {{command: "echo {name} >> {work}/undone"}}, timeout_seconds: 10}}"""
    return "name: five\nparameters:\n  - {name: release, default: release.tar}\nsteps:" + "".join([
        step("fetch", "echo fetched"), step("unpack", "echo unpacked"),
        step("install", f"cp {work}/${{release}} {work}/installed && echo installed"),
        step("migrate", "echo migrated"), step("announce", "echo ${steps.fetch.said} and ${steps.install.said}"),
    ])


def ran(work: Path, name: str = "ran") -> list[str]:
    path = work / name
    return path.read_text().split() if path.exists() else []


async def test_after_the_missing_file_is_created_a_retry_runs_steps_3_to_5_only_and_ends_once(engine, tmp_path) -> None:
    reply = await engine.send(StartRun(actor="olga", playbook=five_steps(tmp_path)))
    first = await wait_for_end(engine, reply.run_id)
    assert type(first[-1]).__name__ == "RunFailed" and "install" in first[-1].failed_steps
    assert ran(tmp_path) == ["fetch", "unpack", "install"]

    (tmp_path / "release.tar").write_text("the release")
    retried = await engine.send(RetryRun(run_id=reply.run_id, actor="olga", reason="release file restored"))
    assert retried.accepted, retried.error
    assert [e["type"] for e in retried.events] == ["RunRetried", "StepScheduled"]
    events = await wait_for_end(engine, reply.run_id, after_retry=True)

    assert ran(tmp_path) == ["fetch", "unpack", "install", "install", "migrate", "announce"]
    after = events[[type(e) for e in events].index(RunRetried) + 1:]
    assert [e.step_id for e in after if isinstance(e, StepStarted)] == ["install", "migrate", "announce"]
    assert [type(e).__name__ for e in after if isinstance(e, TERMINAL_EVENTS)] == ["RunCompleted"]
    run = await engine.run(reply.run_id)
    assert run.status == "completed"
    assert (run.steps["fetch"].attempt.number, run.steps["install"].attempt.number) == (1, 2)
    assert run.steps["announce"].attempt.outputs["stdout"] == "fetched and installed"

    undo = await engine.send(RollbackRun(run_id=reply.run_id, actor="olga", reason="wrong release"))
    assert undo.accepted, undo.error
    rolled_back = await wait_for_end(engine, reply.run_id, after_rollback_start=True)
    assert type(rolled_back[-1]).__name__ == "RollbackCompleted"
    assert ran(tmp_path, "undone") == ["announce", "migrate", "install", "unpack", "fetch"]


async def test_a_cancelled_run_is_retried_with_a_corrected_parameter(engine, tmp_path) -> None:
    (tmp_path / "other.tar").write_text("the other release")
    text = five_steps(tmp_path).replace("echo unpacked", "sleep 30")
    reply = await engine.send(StartRun(actor="olga", playbook=text))
    async for _, event in engine.follow(reply.run_id):
        if isinstance(event, StepStarted) and event.step_id == "unpack":
            break
    await engine.send(CancelRun(run_id=reply.run_id, actor="olga", reason="wrong release"))
    assert type((await wait_for_end(engine, reply.run_id))[-1]).__name__ == "RunCancelled"

    text_fixed = text.replace("sleep 30", "echo unpacked")
    retried = await engine.send(RetryRun(run_id=reply.run_id, actor="olga", parameters={"release": "other.tar"},
                                         playbook=text_fixed, source="fixed.yaml"))
    assert retried.accepted, retried.error
    assert retried.events[0]["corrected"] == ["release"] and retried.events[0]["source"] == "fixed.yaml"
    await wait_for_end(engine, reply.run_id, after_retry=True)
    run = await engine.run(reply.run_id)
    assert run.status == "completed", run.failure
    assert run.started.parameters["release"] == "other.tar"
    assert (tmp_path / "installed").read_text() == "the other release"


async def test_a_retry_the_run_cannot_take_is_refused_with_a_reason(engine, tmp_path) -> None:
    reply = await engine.send(StartRun(actor="olga", playbook=five_steps(tmp_path)))
    await wait_for_end(engine, reply.run_id)
    refusals = [
        (RetryRun(run_id="nosuchrun", actor="olga"), "unknown_run"),
        (RetryRun(run_id=reply.run_id, actor="olga", from_step="migrate"), "illegal_transition"),
        (RetryRun(run_id=reply.run_id, actor="olga", parameters={"relase": "x"}), "invalid_playbook"),
        (RetryRun(run_id=reply.run_id, actor="olga", playbook="name: five\nsteps: []\n"), "invalid_playbook"),
    ]
    for command, code in refusals:
        answer = await engine.send(command)
        assert (answer.accepted, answer.error.code) == (False, code), command
    assert (await engine.run(reply.run_id)).status == "failed"
