"""`playbook projections rebuild`: every web server refolds its views from the first event."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from events.commands import StartRun
from tests.helpers import noop, person, playbook_yaml, wait_for_end

pytestmark = pytest.mark.integration


def cli_env(nats_server, engine) -> dict[str, str]:
    return {"NATS_URL": nats_server.url, "PATH": "", "PLAYBOOK_TOKEN": engine.caller.credential}


async def test_the_cli_rebuilds_the_views_of_a_running_web_server(engine, web_server, nats_server) -> None:
    reply = await engine.send(StartRun(playbook=playbook_yaml([noop("a"), noop("b")])))
    events = await wait_for_end(engine, reply.run_id)
    await web_server.backend.projector.wait_caught_up(10)
    before = web_server.backend.projector.views.runs[reply.run_id]

    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ui.cli.main", "projections", "rebuild", env=cli_env(nats_server, engine),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 0, err.decode()
    assert f"{len(events)} events, 1 runs" in out.decode()
    projector = web_server.backend.projector
    assert projector.applied == len(events) and projector.views.runs[reply.run_id] == before


async def test_without_a_web_server_the_cli_says_so(engine, nats_server) -> None:
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ui.cli.main", "projections", "rebuild", env=cli_env(nats_server, engine),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 4 and "no web server answered" in err.decode()


async def test_a_rebuild_is_an_admins(engine, web_server, nats_server) -> None:
    viewer = await person(engine, "vera", "viewer")
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ui.cli.main", "projections", "rebuild",
        env={**cli_env(nats_server, engine), "PLAYBOOK_TOKEN": viewer.caller.credential},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 5 and "vera may not rebuild projections" in err.decode()
