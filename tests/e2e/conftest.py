"""The whole system as a user runs it: the CLI and services as separate processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.identity.credentials import TOKEN_FILE, read_secret
from tests.helpers import until

ROOT = Path(__file__).resolve().parents[2]


async def the_local_admin(env: dict[str, str]) -> str:
    """The local admin's token, once the identity service (alone, or in `playbook up`) has written it."""
    home = Path(env["PLAYBOOK_HOME"])
    token: str = await until(lambda: read_secret(home, TOKEN_FILE), timeout=30, what="the local admin's token")
    return token


def playbook_cli(*args: str, env: dict[str, str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ui.cli.main", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


class Processes:
    """Background processes of a test, each in its own process group, all stopped at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}-{len(self.started)}.log", "wb")
        proc = subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.started.append(proc)
        return proc

    def kill_group(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and everything it started: a crash, not a shutdown."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
async def engine_process(engine_env: dict[str, str], processes: Processes) -> dict[str, str]:
    """`playbook up` on the test's nats-server; returns the environment for CLI calls."""
    processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], engine_env)
    log = next(processes.logs.glob("up-*.log"))
    await until(lambda: "engine ready" in log.read_text(), timeout=20, what="playbook up ready")
    return engine_env
