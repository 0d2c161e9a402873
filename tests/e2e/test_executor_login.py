"""An executor alone (`python -m services.executor`, compose's `executor`) under its own NATS login, pb-executor,
beside the engine's services each in a process of its own under pb-engine, on a nats-server that takes only the
generated users.

Started before the engine, the executor says it waits for the engine's streams (its login may make none) and
works once they are there. A run with a shell step and an approval gate goes to its end: the executor records its
steps, the run service advances the run after them (the executor's login may write nothing else). The executor
is told of no permissions violation all along.
"""
from __future__ import annotations

import nats
import pytest
from pathlib import Path
from urllib.parse import quote

from events.commands import ApproveStep, StartRun
from events.run import ApprovalRequested, RunCompleted
from services.identity.credentials import NatsRole, nats_login
from tests.e2e.conftest import Processes, the_local_admin
from tests.e2e.test_crash_and_scale import send_when_ready
from tests.e2e.test_split_deployment import _inherited
from tests.helpers import person, playbook_yaml, until, until_event, wait_for_end
from ui.client import EngineClient

pytestmark = pytest.mark.e2e


def with_login(url: str, home: Path, role: NatsRole) -> str:
    login = nats_login(role, home)
    assert login is not None and login.user == f"pb-{role}"
    return url.replace("nats://", f"nats://{quote(login.user)}:{quote(login.password, safe='')}@")


async def test_an_executor_under_pb_executor_waits_for_the_engine_then_runs_a_shell_step_and_a_gated_one(
        secured_nats: tuple[str, Path], processes: Processes, tmp_path: Path) -> None:
    url, home = secured_nats
    directory = tmp_path / "directory.yaml"
    directory.write_text("users:\n  bob: [ops-team]\n")

    def start(service: str, role: NatsRole) -> None:
        processes.start(service, ["-m", f"services.{service}"], {
            **_inherited(), "NATS_URL": with_login(url, home, role), "PLAYBOOK_HOME": str(tmp_path / service),
            "PLAYBOOK_DIRECTORY": str(directory), "PLAYBOOK_USER": "tester", "PYTHONUNBUFFERED": "1"})

    start("executor", "executor")
    executor_log = next(processes.logs.glob("executor-*.log"))
    await until(lambda: "waiting for the engine to create its streams" in executor_log.read_text(), timeout=30,
                what="the executor saying it waits for the engine")
    for service in ("identity", "run", "approval"):
        start(service, "engine")
    await until(lambda: "ready: executor" in executor_log.read_text(), timeout=60, what="the executor working")

    admin = await the_local_admin({"PLAYBOOK_HOME": str(tmp_path / "identity")})
    client_login = nats_login("client", home)
    assert client_login is not None
    nc = await nats.connect(url, **client_login.connect_options())
    try:
        client = EngineClient(nc, admin)
        reply = await send_when_ready(client, StartRun(playbook=playbook_yaml([
            {"id": "build", "action": "shell", "timeout_seconds": 10, "args": {"command": "echo built"},
             "circuit": {"failure_rate": 0.5}},     # a breaker that counts successes: the executor records them
            {"id": "deploy", "action": "shell", "timeout_seconds": 10, "args": {"command": "echo deployed"},
             "depends_on": ["build"], "approval_gate": {"required_approvers": ["ops-team"]}}])), timeout=60)
        assert reply.accepted, reply.error
        await until_event(client, reply.run_id, ApprovalRequested, timeout=30)
        bob = await person(client, "bob")
        approved = await bob.send(ApproveStep(run_id=reply.run_id, step_id="deploy"))
        assert approved.accepted, approved.error
        events = await wait_for_end(client, reply.run_id, 30)
        run = await client.run(reply.run_id)
    finally:
        await nc.close()
    assert isinstance(events[-1], RunCompleted), events[-1]
    assert [run.steps[step].status for step in ("build", "deploy")] == ["succeeded", "succeeded"]
    assert run.steps["deploy"].attempt.executor and run.steps["build"].attempt.executor
    assert run.steps["build"].attempt.outputs["stdout"].strip() == "built"
    said = executor_log.read_text()
    assert "permissions violation" not in said.lower() and "Traceback" not in said, said
