"""The README's quick start, as a newcomer runs it: two commands, nothing to configure, secured anyway.

`playbook up --demo` on an empty home starts the embedded nats-server with its users, runs
the demo as the local admin, and prints a one-time sign-in link; the CLI beside it needs
no setting at all; and NATS without a login, or the API without a token, gets nothing.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import nats
import pytest

from services.embedded import free_port
from tests.e2e.conftest import ROOT, Processes, playbook_cli
from tests.helpers import until

pytestmark = pytest.mark.e2e


def test_the_quick_start_is_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", quick, re.S)
    commands = [line for block in blocks[:2] for line in block.splitlines() if line.strip()]
    assert commands[0] == "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/playbook up --demo"
    assert len(commands) == 2 and commands[1].endswith(".venv/bin/pytest")


def request(url: str, body: dict | None = None, **headers: str) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    sent = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers},
                                  method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(sent, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_up_demo_with_zero_configuration_runs_the_demo_and_the_cli_beside_it(tmp_path: Path,
                                                                                 processes: Processes) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "PLAYBOOK_"))}
    env.update(PYTHONUNBUFFERED="1", PLAYBOOK_NATS_PORT=str(free_port()), PLAYBOOK_STEP_USER=os.environ.get(
        "PLAYBOOK_STEP_USER", ""), PLAYBOOK_HOME=str(tmp_path / ".playbook"))      # where `up` in a clone puts it
    up = processes.start("up", ["-m", "ui.cli.main", "up", "--demo", "--http-port", str(free_port())], env)
    log = next(processes.logs.glob("up-*.log"))

    def said(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, log.read_text())

    link = await until(lambda: said(r"sign in to the dashboard .*: (http://\S+)/#code=(\S+)"), timeout=30,
                       what="the sign-in link")
    demo = await until(lambda: said(r"demo run (\w+) (completed|failed)"), timeout=60, what="the demo's end")
    assert demo[2] == "completed", log.read_text()
    assert up.poll() is None

    base, code = link[1], link[2]
    assert request(f"{base}/api/runs")[0] == 401                                      # no token, no runs
    status, who = await asyncio.to_thread(request, f"{base}/api/session", {"code": code}, Origin=base)
    assert (status, who["grants"]) == (201, ["admin", "unsafe_shell"])
    assert (await asyncio.to_thread(request, f"{base}/api/session", {"code": code}, Origin=base))[0] == 401  # once

    listing = await asyncio.to_thread(playbook_cli, "list", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    assert [(r["run_id"], r["actor"]) for r in json.loads(listing.stdout)] == [(demo[1], who["name"])]
    ran = await asyncio.to_thread(playbook_cli, "run", "examples/hello.yaml", "-p", "who=newcomer", env=env)
    assert ran.returncode == 0 and "run completed" in ran.stdout, ran.stderr

    url = (tmp_path / ".playbook" / "nats.url").read_text().strip()
    with pytest.raises(Exception, match="(?i)authorization"):
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)
