"""A running step's output reaches the logs stream while it runs, redacted; the recorded
output follows when the attempt ends."""
from __future__ import annotations

import aiohttp
import pytest

from events.commands import StartRun
from tests.helpers import playbook_yaml, read_until

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-live-Zq81"


async def test_live_lines_arrive_while_the_step_runs_and_secrets_never_do(engine, web_server, monkeypatch,
                                                                           tmp_path) -> None:
    monkeypatch.setenv("PLAYBOOK_SECRET_DEPLOY_KEY", SECRET)
    ready, go = tmp_path / "ready", tmp_path / "go"
    text = playbook_yaml([{"id": "deploy", "action": "shell", "timeout_seconds": 20, "args": {"command":
        f"while [ ! -e {ready} ]; do sleep 0.02; done; echo rolling out with ${{secret:deploy_key}}; echo warming >&2; "
        f"while [ ! -e {go} ]; do sleep 0.02; done; echo finished"}}])
    reply = await engine.send(StartRun(playbook=text))
    seen = []
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(f"{web_server.url}/api/runs/{reply.run_id}/logs/stream") as response:
            ready.touch()                          # the output starts once we are listening
            seen += await read_until(response, lambda m, _: m.event == "live" and "warming" in m.data["text"])
            if not any(m.event == "live" and "rolling out" in m.data["text"] for m in seen):
                seen += await read_until(response, lambda m, _: m.event == "live" and "rolling out" in m.data["text"])
            run = await engine.run(reply.run_id)
            assert run.steps["deploy"].status == "running"            # live: the step has not ended
            go.touch()
            seen += await read_until(response, lambda m, _: m.event == "log")
    live = [m.data for m in seen if m.event == "live"]
    assert {(line["step_id"], line["attempt"]) for line in live} == {("deploy", 1)}
    assert {line["stream"] for line in live} == {"stdout", "stderr"}
    assert any(line["text"] == "rolling out with ***" for line in live)
    recorded = {entry["stream"]: entry["text"] for entry in seen[-1].data}
    assert recorded["stdout"] == "rolling out with ***\nfinished"
    assert SECRET not in repr([m.data for m in seen])


async def test_the_run_stream_with_logs_carries_live_lines_and_records_too(engine, web_server, tmp_path) -> None:
    go = tmp_path / "go"
    text = playbook_yaml([{"id": "build", "action": "shell", "timeout_seconds": 20, "args": {
        "command": f"while [ ! -e {go} ]; do echo compiling; sleep 0.05; done; echo built"}}])
    reply = await engine.send(StartRun(playbook=text))
    seen = []
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(f"{web_server.url}/api/runs/{reply.run_id}/stream?logs=1") as response:
            seen += await read_until(response, lambda m,
                                     _: m.event == "live" and m.data["text"].startswith("compiling"))
            go.touch()
            seen += await read_until(response, lambda m, _: m.event == "log")
            seen += await read_until(response, lambda m, _: m.event == "view" and m.data["status"] == "completed")
    recorded = next(m for m in seen if m.event == "log").data
    assert recorded[0]["step_id"] == "build" and recorded[0]["text"].endswith("built")
    assert [m.data["type"] for m in seen if m.event == "event"][0] == "RunStarted"
