"""A service process started as compose starts one (`python -m services.<name>`, `restart: unless-stopped`) but
wrongly: a login NATS refuses stops it at once with the reason and exit 4, so the container shows as restarting
(not up and serving nothing); a NATS not there yet is waited for, and a stop meanwhile (`docker stop`'s SIGTERM)
ends the wait at once. A login that may not make the streams (a client's) says so at once, exit 4."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from services.embedded import free_port
from services.identity.credentials import nats_login
from tests.e2e.conftest import Processes
from tests.e2e.test_split_deployment import _inherited
from tests.helpers import until

pytestmark = pytest.mark.e2e


def service_env(tmp_path: Path, nats_url: str) -> dict[str, str]:
    return {**_inherited(), "NATS_URL": nats_url, "PLAYBOOK_HOME": str(tmp_path / "service"),
            "PYTHONUNBUFFERED": "1"}


async def exited(process: subprocess.Popen[bytes], timeout: float) -> int:
    await until(lambda: process.poll() is not None, timeout=timeout, what="the service's exit")
    return process.returncode


@pytest.mark.parametrize("service", ["services.executor", "ui.web"])
async def test_a_login_nats_refuses_stops_the_service_with_the_reason(
        service: str, secured_nats: tuple[str, Path], processes: Processes, tmp_path: Path) -> None:
    url = secured_nats[0].replace("nats://", "nats://pb-engine:not-the-password@")
    process = processes.start("service", ["-m", service], service_env(tmp_path, url))
    code = await exited(process, timeout=30)
    said = next(processes.logs.glob("service-*.log")).read_text()
    assert code == 4, said
    assert "refused the login" in said and "Authorization Violation" in said, said
    assert "not-the-password" not in said and "Traceback" not in said, said


async def test_a_service_waiting_for_nats_stops_when_told(processes: Processes, tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"       # no server there (yet)
    process = processes.start("service", ["-m", "services.run"], service_env(tmp_path, url))
    log = next(processes.logs.glob("service-*.log"))
    await until(lambda: "Connect call failed" in log.read_text(), timeout=30, what="the service waiting for NATS")
    os.killpg(process.pid, signal.SIGTERM)
    code = await exited(process, timeout=5)
    assert code == 0, log.read_text()


async def test_a_service_given_a_login_that_may_not_make_the_streams_stops_at_once_saying_so(
        secured_nats: tuple[str, Path], processes: Processes, tmp_path: Path) -> None:
    secured_url, home = secured_nats
    client = nats_login("client", home)
    assert client is not None
    url = secured_url.replace("nats://", f"nats://{client.user}:{client.password}@")
    process = processes.start("service", ["-m", "services.run"], service_env(tmp_path, url))
    code = await exited(process, timeout=10)
    said = next(processes.logs.glob("service-*.log")).read_text()
    assert code == 4, said
    assert "does not let this login do what the engine needs" in said and "permissions violation" in said, said
    assert "pb-engine" in said and "did not answer" not in said and "Traceback" not in said, said
