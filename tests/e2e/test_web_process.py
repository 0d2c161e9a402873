"""`python -m ui.web`: a web server of its own beside an engine, as compose runs it."""
from __future__ import annotations

import json
import time
import urllib.request

import pytest

from services.embedded import free_port
from tests.e2e.conftest import Processes, playbook_cli

pytestmark = pytest.mark.e2e


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_separate_web_process_serves_runs_made_through_the_engine(engine_env, processes: Processes) -> None:
    processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], engine_env)
    port = free_port()
    web = processes.start("web", ["-m", "ui.web"], {**engine_env, "PLAYBOOK_WEB_PORT": str(port)})
    deadline = time.monotonic() + 20
    while "web on" not in next(processes.logs.glob("web-*.log")).read_text():
        assert web.poll() is None and time.monotonic() < deadline, "the web process did not start"
        time.sleep(0.05)
    while (ready := get(f"http://127.0.0.1:{port}/readyz"))[0] != 200:    # 503 until its views caught up
        assert time.monotonic() < deadline and not ready[1]["ready"], ready
        time.sleep(0.05)

    run_id = playbook_cli("run", "examples/hello.yaml", "-p", "who=web", "--detach", env=engine_env).stdout.strip()
    assert playbook_cli("events", run_id, "--follow", env=engine_env).returncode == 0     # until it ends
    deadline = time.monotonic() + 10
    while (view := get(f"http://127.0.0.1:{port}/api/runs?playbook=hello")[1])["total"] < 1:
        assert time.monotonic() < deadline, view
        time.sleep(0.05)
    assert view["runs"][0]["run_id"] == run_id
