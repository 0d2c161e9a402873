"""One `playbook up` to a home: a second is refused before it starts anything, and the first goes on serving."""
from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.embedded import free_port
from tests.e2e.conftest import ROOT, Processes, playbook_cli
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


async def test_a_user_who_may_not_enter_the_home_is_told_whose_it_is_not_shown_a_traceback(
        tmp_path: Path, processes: Processes) -> None:
    """`sudo playbook up`, then `playbook list` (or `up`) as oneself in the same checkout: the home is private to
    the user who started the engine, and the CLI said so with a PermissionError's traceback."""
    home = tmp_path / ".playbook"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "PLAYBOOK_"))}
    env.update(PYTHONUNBUFFERED="1", PLAYBOOK_NATS_PORT=str(free_port()), PLAYBOOK_HOME=str(home),
               PLAYBOOK_STEP_USER=os.environ.get("PLAYBOOK_STEP_USER", ""))
    processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], env)
    log = processes.logs / "up-0.log"
    await until(lambda: "engine ready" in log.read_text(), timeout=60, what="playbook up ready")

    with someone_else_than_the_owner_of(home) as outsider:
        listed = await asyncio.to_thread(cli_as, outsider, "list", env=env)
        second_up = await asyncio.to_thread(cli_as, outsider, "up", "--http-port", "0", env=env)
    owner = pwd.getpwuid(os.geteuid()).pw_name
    assert listed.returncode == 5, listed.stderr
    assert "Traceback" not in listed.stderr
    assert f"belongs to {owner}" in listed.stderr and "PLAYBOOK_TOKEN" in listed.stderr
    assert second_up.returncode == 2, second_up.stderr
    assert "Traceback" not in second_up.stderr
    assert f"{home} cannot be used" in second_up.stderr and f"belongs to {owner}" in second_up.stderr
    assert "PLAYBOOK_HOME of your own" in second_up.stderr

    mine = await asyncio.to_thread(playbook_cli, "list", env=env)
    assert mine.returncode == 0, mine.stderr


@contextlib.contextmanager
def someone_else_than_the_owner_of(home: Path) -> Iterator[list[str]]:
    """What runs the CLI as a user who may not enter `home`: as root (CI), setpriv to nobody; otherwise the
    home is closed to its owner for the while."""
    if os.geteuid() == 0:
        yield ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
        return
    home.chmod(0)
    try:
        yield []
    finally:
        home.chmod(0o700)


def cli_as(wrapper: list[str], *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*wrapper, sys.executable, "-m", "ui.cli.main", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
