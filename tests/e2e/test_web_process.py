"""`python -m ui.web`: a web server of its own beside an engine, as compose runs it."""
from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from services.embedded import free_port
from tests.e2e.conftest import Processes, playbook_cli, the_local_admin
from tests.helpers import until

pytestmark = pytest.mark.e2e


def get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_a_separate_web_process_serves_runs_made_through_the_engine(engine_env, processes: Processes) -> None:
    processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], engine_env)
    port = free_port()
    web = processes.start("web", ["-m", "ui.web"], {**engine_env, "PLAYBOOK_WEB_PORT": str(port)})
    log = next(processes.logs.glob("web-*.log"))
    await until(lambda: "web on" in log.read_text() or web.poll() is not None, timeout=20, what="the web process up")
    assert web.poll() is None, log.read_text()

    async def ready() -> bool:           # 503 until its views caught up
        status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/readyz")
        assert status == 200 or not body["ready"], body
        return status == 200
    await until(ready, timeout=20, what="the web process ready")

    token = await the_local_admin(engine_env)
    run_id = playbook_cli("run", "examples/hello.yaml", "-p", "who=web", "--detach", env=engine_env).stdout.strip()
    assert playbook_cli("events", run_id, "--follow", env=engine_env).returncode == 0     # until it ends

    async def listed() -> dict | None:
        _, view = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/api/runs?playbook=hello", token)
        return view if view["total"] >= 1 else None
    view = await until(listed, what="the run in the web's list")
    assert view["runs"][0]["run_id"] == run_id
