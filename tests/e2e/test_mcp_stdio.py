"""An agent host spawns `playbook mcp` over stdio: a gated run, its progress, another principal's approval, its logs."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from services.embedded import free_port
from services.identity.credentials import TOKEN_FILE
from tests.e2e.conftest import ROOT
from tests.helpers import person, playbook_yaml, wait_for_end
from ui.client import EngineClient
from ui.mcp.door import client_connection
from ui.mcp.server import build_server

pytestmark = pytest.mark.e2e

GATED = playbook_yaml([
    {"id": "build", "action": "shell", "args": {"command": "echo built"}, "timeout_seconds": 10},
    {"id": "deploy", "action": "shell", "args": {"command": "echo deployed"}, "depends_on": ["build"],
     "timeout_seconds": 10, "approval_gate": {"message": "Ship it?", "required_approvers": ["bob"]}},
], name="ship")


async def test_an_agent_host_runs_a_gated_playbook_through_playbook_mcp(engine, engine_env) -> None:
    alice = await person(engine, "alice", "operator", agent=True)
    bob = await person(engine, "bob", "approver")
    assert alice.caller.credential is not None
    host = StdioServerParameters(command=sys.executable, args=["-m", "ui.cli.main", "mcp"], cwd=ROOT,
                                 env={**engine_env, "PLAYBOOK_TOKEN": alice.caller.credential})
    progress: list[Any] = []

    async def heard(done: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    async with Client(host, read_timeout_seconds=60) as session:
        started = await session.call_tool("execute_playbook_advanced", {"playbook_yaml": GATED, "wait": True},
                                          progress_callback=heard)
        assert not started.is_error, started.content
        run = started.structured_content
        assert run is not None and run["status"] == "waiting_approval"
        assert any(m.startswith("build: ") for m in progress)
        assert progress[-1].startswith("deploy: ")

        refused = await session.call_tool("approve_execution_step", {"run_id": run["run_id"], "step_id": "deploy"})
        assert refused.is_error and "alice may not approve" in refused.content[0].text

        async with Client(build_server(EngineClient(bob.nc, bob.caller.credential, door="mcp"))) as as_bob:
            approved = await as_bob.call_tool("approve_execution_step", {"run_id": run["run_id"],
                                                                         "step_id": "deploy", "comment": "go"})
            assert not approved.is_error, approved.content
        ends = await wait_for_end(engine, run["run_id"])
        assert ends[0].actor == "alice"          # the run was started by the token's principal
        assert [e.actor for e in ends if type(e).__name__ == "ApprovalGiven"] == ["bob"]

        logs = await session.call_tool("get_execution_logs", {"run_id": run["run_id"]})
        assert not logs.is_error and logs.structured_content is not None
        assert [(x["step_id"], x["line"]) for x in logs.structured_content["lines"]] == [
            ("build", "built"), ("deploy", "deployed")]
        status = await session.call_tool("get_execution_status", {"run_id": run["run_id"]})
        assert status.structured_content is not None and status.structured_content["status"] == "completed"


async def test_playbook_file_reads_none_of_the_engines_own_files(engine, engine_env, tmp_path) -> None:
    """The stdio server reads files as its user: an agent with a narrow token named the local admin's token file,
    and the diagnostic quoted its first 40 characters (the id and half the secret). The engine's home and the
    secrets file are off limits, through a link too; any other file of the user is read as before."""
    home = Path(engine_env["PLAYBOOK_HOME"])
    admin_token = home / "credentials" / TOKEN_FILE
    admin_token.parent.mkdir(parents=True, exist_ok=True)
    admin_token.write_text("pbt_0123456789abcdef_" + "s" * 43)
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("name: hunter2-secret-value\n")
    (tmp_path / "link.yaml").symlink_to(admin_token)
    (tmp_path / "mine.yaml").write_text(playbook_yaml([{"id": "a", "action": "noop"}]))
    vera = await person(engine, "vera", "viewer", agent=True)
    assert vera.caller.credential is not None
    host = StdioServerParameters(command=sys.executable, args=["-m", "ui.cli.main", "mcp"], cwd=ROOT,
                                 env={**engine_env, "PLAYBOOK_TOKEN": vera.caller.credential,
                                      "PLAYBOOK_SECRETS_FILE": str(secrets)})
    async with Client(host, read_timeout_seconds=60) as session:
        for path in (admin_token, tmp_path / "link.yaml", secrets, home):
            refused = await session.call_tool("validate_playbook_advanced", {"playbook_file": str(path)})
            text = refused.content[0].text
            assert refused.is_error and "does not read the engine's own files" in text, text
            assert "sssss" not in text and "hunter2" not in text
        mine = await session.call_tool("validate_playbook_advanced", {"playbook_file": str(tmp_path / "mine.yaml")})
        assert not mine.is_error and mine.structured_content is not None and mine.structured_content["valid"]


def test_playbook_mcp_without_an_engine_says_so_instead_of_waiting_for_ever(tmp_path: Path) -> None:
    """An agent host that spawns the door before `playbook up` is told, not left with a server that never answers."""
    env = {"PATH": os.environ["PATH"], "PLAYBOOK_HOME": str(tmp_path / "home"), "PLAYBOOK_TOKEN": "pbt_x.y",
           "NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    door = subprocess.run([sys.executable, "-m", "ui.cli.main", "mcp"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert door.returncode == 4 and "is `playbook up` running?" in door.stderr, door.stderr


async def test_the_door_connects_to_any_server_a_cluster_url_names(settings) -> None:
    """NATS_URL may name several servers (a cluster's), the first of which is down."""
    cluster_url = f"nats://127.0.0.1:{free_port()},{settings.nats_url}"
    nc = await asyncio.wait_for(client_connection(replace(settings, nats_url=cluster_url)), 30)
    try:
        assert nc.is_connected
    finally:
        await nc.close()
