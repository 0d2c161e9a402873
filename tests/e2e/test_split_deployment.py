"""The engine as compose.yaml runs it: every service in a process of its own (executors twice), one nats-server.

Each service's command, replicas and environment come from compose.yaml itself; only what
points into containers (the NATS cluster, volumes, the directory file) is pointed at this
test's: one nats-server, so streams of one replica.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
import yaml

from events.commands import ApproveStep, StartRun
from events.identity import caller_headers
from events.run import ApprovalRequested, RollbackCompleted, RunCompleted, StepRetryScheduled
from services.embedded import free_port
from tests.e2e.conftest import ROOT, Processes, the_local_admin
from tests.e2e.test_crash_and_scale import send_when_ready
from tests.helpers import noop, person, playbook_yaml, until, wait_for_end
from ui.client import EngineClient

pytestmark = pytest.mark.e2e


def compose_services() -> dict[str, dict[str, Any]]:
    """Every engine service of compose.yaml: command, replicas, environment (the shared part merged in)."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return {name: {"command": spec["command"], "replicas": spec.get("deploy", {}).get("replicas", 1),
                   "environment": dict(spec.get("environment") or {})}
            for name, spec in compose["services"].items() if not name.startswith("nats")}


def started_as_compose_does(processes: Processes, nats_url: str, tmp_path: Path, directory: Path) -> int:
    """Start every service; returns the web port. The identity service writes the first admin's token to its
home, as it does to its volume."""
    web_port = free_port()
    for name, spec in compose_services().items():
        env = {"PLAYBOOK_USER": "tester", **spec["environment"], "NATS_URL": nats_url, "PLAYBOOK_STREAM_REPLICAS": "1",
               "PLAYBOOK_HOME": str(tmp_path / name), "PYTHONUNBUFFERED": "1"}
        if "PLAYBOOK_DIRECTORY" in env:
            env["PLAYBOOK_DIRECTORY"] = str(directory)
        if name == "web":
            env.update(PLAYBOOK_WEB_HOST="127.0.0.1", PLAYBOOK_WEB_PORT=str(web_port))
        program, *args = spec["command"]
        assert program == "python"
        for _ in range(spec["replicas"]):
            processes.start(name, args, {**_inherited(), **{k: str(v) for k, v in env.items()}})
    return web_port


def _inherited() -> dict[str, str]:
    """This machine's environment, without engine settings a developer's shell may hold (but who steps run as)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PLAYBOOK_", "NATS_")) or k == "PLAYBOOK_STEP_USER"}


async def test_approval_retry_and_rollback_pass_with_every_service_in_its_own_process(
        processes: Processes, nats_server, tmp_path: Path) -> None:
    directory = tmp_path / "directory.yaml"
    directory.write_text("users:\n  bob: [ops-team]\n")
    web_port = started_as_compose_does(processes, nats_server.url, tmp_path, directory)
    expected = sum(spec["replicas"] for spec in compose_services().values())
    await until(lambda: sum("ready: " in log.read_text() for log in processes.logs.iterdir()) == expected,
                timeout=60, what=f"{expected} processes ready")
    nc = await nats.connect(nats_server.url)
    admin = await the_local_admin({"PLAYBOOK_HOME": str(tmp_path / "identity")})
    client = EngineClient(nc, admin)
    flag = tmp_path / "failed-once"
    try:
        gated = await send_when_ready(client, StartRun(playbook=playbook_yaml([
            noop("prepare"), noop("deploy", approval_gate={"required_approvers": ["ops-team"]})])))
        retried = await client.send(StartRun(playbook=playbook_yaml([
            {"id": "flaky", "action": "shell", "timeout_seconds": 10,
             "args": {"command": f"[ -e {flag} ] && exit 0; touch {flag}; echo not yet >&2; exit 1"},
             "retry": {"max_attempts": 3, "base_delay": 0.2, "jitter": "none", "retry_on_errors": ["unknown"]}}])))
        undone = await client.send(StartRun(playbook=playbook_yaml([
            {"id": "change", "action": "noop", "rollback": [{"action": "noop"}]},
            {"id": "verify", "action": "shell", "timeout_seconds": 10, "args": {"command": "exit 2"}}],
            on_failure="rollback")))

        async for _, event in client.follow(gated.run_id):
            if isinstance(event, ApprovalRequested):
                break
        bob = await person(client, "bob")
        first_try = await bob.send(ApproveStep(run_id=gated.run_id, step_id="deploy"))
        assert first_try.accepted, first_try.error      # the first legitimate approval counts

        ends = await asyncio.gather(*(wait_for_end(client, r.run_id, 60) for r in (gated, retried, undone)))
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{web_port}/api/runs/{undone.run_id}",
                         headers=caller_headers(admin)) as response:
            view = await response.json()
    finally:
        await nc.close()
    gate, retry, rollback = ends
    assert isinstance(gate[-1], RunCompleted)
    assert isinstance(retry[-1], RunCompleted) and any(isinstance(e, StepRetryScheduled) for e in retry)
    assert isinstance(rollback[-1], RollbackCompleted)
    assert response.status == 200 and view["status"] == "rolled_back"
