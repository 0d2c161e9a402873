"""One `playbook up` to a home: a second is refused before it starts anything, and the first goes on serving."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from services.embedded import free_port
from tests.e2e.conftest import Processes, playbook_cli
from tests.helpers import until

pytestmark = pytest.mark.e2e


async def test_a_second_up_in_the_same_home_is_refused_and_the_first_serves_on(tmp_path: Path,
                                                                              processes: Processes) -> None:
    home = tmp_path / ".playbook"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "PLAYBOOK_"))}
    env.update(PYTHONUNBUFFERED="1", PLAYBOOK_NATS_PORT=str(free_port()), PLAYBOOK_HOME=str(home),
               PLAYBOOK_STEP_USER=os.environ.get("PLAYBOOK_STEP_USER", ""))
    first = processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], env)
    log = processes.logs / "up-0.log"
    await until(lambda: "engine ready" in log.read_text(), timeout=60, what="the first playbook up ready")
    url = (home / "nats.url").read_text()

    second = await asyncio.to_thread(playbook_cli, "up", "--http-port", "0", env=env, timeout=30)
    assert second.returncode == 2, second.stderr
    assert f"an engine already runs from {home} (`playbook up`, process {first.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    assert (home / "nats.url").read_text() == url and "nats-server" not in second.stderr

    listed = await asyncio.to_thread(playbook_cli, "list", env=env)
    assert listed.returncode == 0, listed.stderr
