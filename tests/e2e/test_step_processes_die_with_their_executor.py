"""A step's processes never outlive their engine process: killed with it by its guardian, whichever way the step
runs (as the engine's user, as `nobody` through setpriv, in a bubblewrap sandbox), or swept by the next executor
on the machine if the guardian died too."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from services.executor.guardian import marked_processes
from services.executor.leftovers import Instance
from tests.e2e.conftest import Processes
from tests.helpers import until

pytestmark = pytest.mark.e2e

# A step as a shell script writes it: children, a subshell, background jobs, one in a session of its own, a main
# process that waits.
STEP = ("sleep 300 & sleep 300 & (sleep 300; echo never) & nohup sleep 300 >/dev/null 2>&1 & setsid sleep 300 & "
        "sleep 300")
DRIVER = f"""
import asyncio
from services.executor.actions import run_action
asyncio.run(run_action("shell", {{"command": {STEP!r}}}, timeout=600))
"""
MODES = {
    "as the engine's user": {},
    "as nobody through setpriv": {"PLAYBOOK_STEP_USER": "nobody"},
    "in a bubblewrap sandbox": {"PLAYBOOK_STEP_SANDBOX": "bubblewrap"},
}


def started_by(pid: int) -> list[int]:
    """The step processes the engine process `pid` started, still running."""
    return [p for p, marker, _ in marked_processes()
            if (owner := Instance.parse(marker)) and owner[2] == pid and _running(p)]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def guardian_of(pid: int) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"guardian.py" in cmdline:
                return int(entry)
    raise AssertionError(f"process {pid} has no guardian")


def engine_process(processes: Processes, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return processes.start("engine", ["-c", DRIVER], env)


@pytest.mark.parametrize("mode", MODES)
async def test_a_killed_engine_process_takes_every_process_of_its_step_with_it(mode: str, processes: Processes) -> None:
    if mode.startswith("in a bubblewrap") and not shutil.which("bwrap"):
        pytest.skip("bwrap is not installed")
    if mode.endswith("setpriv") and os.geteuid() != 0:
        pytest.skip("only a root engine runs steps as another user")
    env = {**os.environ, **MODES[mode]}
    engine = engine_process(processes, env)
    step = await until(lambda: len(started_by(engine.pid)) >= 6 and started_by(engine.pid), timeout=20,
                       what="the step and its background processes")
    engine.send_signal(signal.SIGKILL)          # no goodbye: only the guardian is left to act
    engine.wait()
    await until(lambda: not any(_running(p) for p in step), timeout=10, what="every process of the step gone")


async def test_what_a_dead_engine_left_is_killed_by_the_next_executor_on_the_machine(
        processes: Processes, engine_env: dict[str, str]) -> None:
    engine = engine_process(processes, dict(os.environ))
    step = await until(lambda: len(started_by(engine.pid)) >= 6 and started_by(engine.pid), timeout=20,
                       what="the step and its background processes")
    guardian = guardian_of(engine.pid)
    os.kill(guardian, signal.SIGKILL)           # the guardian dies first, then the engine: nobody left to act
    engine.send_signal(signal.SIGKILL)
    engine.wait()
    assert all(_running(p) for p in step), "orphans stay: nothing killed them yet"
    processes.start("executor", ["-m", "services.executor"], engine_env)
    await until(lambda: not any(_running(p) for p in step), timeout=30, what="the leftovers swept")

