"""`playbook up` runs the learning service in a process of its own: it learns, comes back when it dies,
and goes when `up` goes, however `up` goes."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.service_process import READY, ServiceProcess
from tests.e2e.conftest import Processes, playbook_cli
from tests.helpers import until

pytestmark = pytest.mark.e2e


def learning_children(up_pid: int) -> list[int]:
    """Processes `up` started that run the learning service."""
    children = Path(f"/proc/{up_pid}/task/{up_pid}/children").read_text().split()
    return [int(pid) for pid in children if _runs_learning(int(pid))]


def _runs_learning(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    return b"app.service_process" in argv and b"learning" in argv


def gone(pid: int) -> bool:
    return not _runs_learning(pid)


async def up(processes: Processes, env: dict[str, str]) -> tuple[int, Path]:
    proc = processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], env)
    log = next(processes.logs.glob("up-*.log"))
    await until(lambda: "engine ready" in log.read_text(), timeout=30, what="playbook up ready")
    return proc.pid, log


async def insights_saying(env: dict[str, str], wanted: str) -> bool:
    shown = await asyncio.to_thread(playbook_cli, "insights", "hello", env=env)
    return shown.returncode == 0 and wanted in shown.stdout


async def test_the_learning_service_learns_in_its_own_process_and_comes_back_when_killed(
        engine_env: dict[str, str], processes: Processes) -> None:
    secret = "s3cret-value-for-steps-only"
    up_pid, log = await up(processes, {**engine_env, "PLAYBOOK_SECRET_DEPLOY_KEY": secret,
                                       "PLAYBOOK_TOKEN": "pbt_0123456789abcdef_cli-only"})
    (learning,) = learning_children(up_pid)
    try:
        environ = Path(f"/proc/{learning}/environ").read_bytes()
    except PermissionError:     # not root: undumpable, unreadable to its own user's other processes (steps)
        assert os.geteuid() != 0
    else:                       # root (CI) reads it: handed up's environment without the steps' secrets
        assert b"PLAYBOOK_HOME=" in environ and secret.encode() not in environ and b"pbt_" not in environ
    ran = await asyncio.to_thread(playbook_cli, "run", "examples/hello.yaml", "-p", "who=x", env=engine_env)
    assert ran.returncode == 0, ran.stderr
    await until(lambda: insights_saying(engine_env, "hello: 1 runs (1 completed)"), timeout=30, what="the run learned")

    os.kill(learning, signal.SIGKILL)
    again = await until(lambda: [pid for pid in learning_children(up_pid) if pid != learning], timeout=30,
                        what="the learning service started again")
    assert "the learning service exited (code -9); starting it again in 1 s" in log.read_text()
    ran = await asyncio.to_thread(playbook_cli, "run", "examples/hello.yaml", "-p", "who=y", env=engine_env)
    assert ran.returncode == 0, ran.stderr
    await until(lambda: insights_saying(engine_env, "hello: 2 runs (2 completed)"), timeout=30,
                what="the second run learned by the service started again")

    os.kill(up_pid, signal.SIGTERM)
    await until(lambda: gone(again[0]), timeout=30, what="the learning service stopped with up")


async def test_the_learning_service_dies_with_a_killed_up(engine_env: dict[str, str], processes: Processes) -> None:
    up_pid, _ = await up(processes, engine_env)
    (learning,) = learning_children(up_pid)
    os.kill(up_pid, signal.SIGKILL)
    await until(lambda: gone(learning), timeout=30, what="the learning service gone with up")



async def test_a_service_that_cannot_start_holds_up_nothing_and_is_tried_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="playbook")
    service = ServiceProcess("no-such-service", {**os.environ, "PLAYBOOK_HOME": str(tmp_path)})
    service.start()
    try:
        async with asyncio.timeout(60):   # the process ends at once: no waiting out the hour asked for
            assert not await service.ready(3600)
        await until(lambda: caplog.text.count("the no-such-service service exited (code 2)") >= 2, timeout=30,
                    what="a second try")
        assert "starting it again in 1 s" in caplog.text and "starting it again in 2 s" in caplog.text
    finally:
        await service.stop()
    assert service.process is not None and service.process.returncode is not None


async def test_what_a_service_writes_on_its_stdout_never_stops_its_supervisor_reading() -> None:
    service = ServiceProcess("learning", {})
    output = asyncio.StreamReader()   # as a child's pipe delivers it: an over-long line, then the ready line
    output.feed_data(b"x" * 100_000 + b"\n" + READY)
    output.feed_eof()
    await service._read_output(SimpleNamespace(stdout=output))   # type: ignore[arg-type]
    assert await service.ready(0)
