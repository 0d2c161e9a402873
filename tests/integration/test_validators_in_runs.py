"""Pre-step validators in real runs: a failed one fails the step before its action touches anything."""
from __future__ import annotations

from pathlib import Path

import pytest

from events.commands import StartRun
from events.run import RunCompleted, RunFailed, StepFailed
from tests.helpers import playbook_yaml, wait_for_end

pytestmark = pytest.mark.integration


async def start(client, steps: list[dict]) -> str:
    reply = await client.send(StartRun(playbook=playbook_yaml(steps)))
    assert reply.accepted, reply.error
    return reply.run_id


def guarded(marker: Path, *validators: dict) -> dict:
    """A step whose action leaves a marker file, so a test can tell whether it ran."""
    return {"id": "deploy", "action": "shell", "args": {"command": f"touch {marker}"}, "timeout_seconds": 5,
            "validators": list(validators)}


async def test_a_failed_validator_fails_the_step_without_running_its_action(engine, tmp_path: Path) -> None:
    marker = tmp_path / "deployed"
    run_id = await start(engine, [guarded(marker, {"type": "file_exists", "path": str(tmp_path / "release.tar"),
                                                   "message": "build the release first"})])
    events = await wait_for_end(engine, run_id)
    [failed] = [e for e in events if isinstance(e, StepFailed)]
    assert (failed.step_id, failed.category) == ("deploy", "validation")
    assert failed.error == (f"validator 1 (file_exists): {tmp_path / 'release.tar'} does not exist"
                            " — build the release first")
    assert isinstance(events[-1], RunFailed)
    assert not marker.exists()


async def test_a_step_whose_validators_pass_runs_normally(engine, tmp_path: Path) -> None:
    marker = tmp_path / "deployed"
    run_id = await start(engine, [guarded(marker, {"type": "file_exists", "path": str(tmp_path), "kind": "directory"},
                                          {"type": "command_succeeds", "argv": ["test", "-d", str(tmp_path)]})])
    events = await wait_for_end(engine, run_id)
    assert isinstance(events[-1], RunCompleted)
    assert marker.exists()


async def test_a_validator_reference_that_cannot_resolve_is_a_configuration_failure(engine, tmp_path: Path) -> None:
    marker = tmp_path / "deployed"
    run_id = await start(engine, [guarded(marker, {"type": "file_exists", "path": "${env.NOT_ALLOWED}"})])
    events = await wait_for_end(engine, run_id)
    [failed] = [e for e in events if isinstance(e, StepFailed)]
    assert failed.category == "configuration"
    assert failed.error.startswith("validator 1 (file_exists): ${env.NOT_ALLOWED}")
    assert not marker.exists()
