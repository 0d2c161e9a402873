"""`GET /api/insights`: what the learning service learned, over HTTP, for all playbooks or one."""
from __future__ import annotations

import aiohttp
import pytest

from events import subjects
from events.commands import StartRun
from events.identity import caller_headers
from app.root import ALL_SERVICES
from tests.helpers import noop, playbook_yaml, running_engine, wait_for_end, web_replica
from ui.insights import LearningClient

pytestmark = pytest.mark.integration


async def test_insights_for_every_playbook_and_for_one(web_server, engine) -> None:
    for name in ("build", "ship"):
        reply = await engine.send(StartRun(playbook=playbook_yaml([noop("a"), noop("b")], name=name)))
        await wait_for_end(engine, reply.run_id)
    last = (await engine.nc.jetstream().stream_info(subjects.RUNS_STREAM)).state.last_seq
    await LearningClient(engine.nc, engine.headers()).insights(after=last, wait=30)   # learned; the API does not wait
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(f"{web_server.url}/api/insights") as response:
            assert response.status == 200 and response.content_type == "application/json"
            everything = await response.json()
        async with http.get(f"{web_server.url}/api/insights", params={"playbook": "ship"}) as response:
            one = await response.json()
    assert [p["playbook"] for p in everything["playbooks"]] == ["build", "ship"]
    assert everything["position"] == last
    ship, = one["playbooks"]
    assert (ship["runs"], ship["outcomes"], [s["step"] for s in ship["steps"]]) == (1, {"completed": 1}, ["a", "b"])


async def test_metrics_show_how_far_behind_the_learning_is(web_server, engine) -> None:
    reply = await engine.send(StartRun(playbook=playbook_yaml([noop("a")])))
    await wait_for_end(engine, reply.run_id)
    last = (await engine.nc.jetstream().stream_info(subjects.RUNS_STREAM)).state.last_seq
    await LearningClient(engine.nc, engine.headers()).insights(after=last, wait=30)
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(f"{web_server.url}/metrics") as response:
            text = await response.text()
    figures = dict(line.split(" ", 1) for line in text.splitlines() if line.startswith("playbook_learning_"))
    assert float(figures["playbook_learning_position"]) >= last
    assert float(figures["playbook_learning_lag_events"]) >= 0 and figures["playbook_learning_rebuilding"] == "0.0"
    assert figures["playbook_learning_up"] == "1.0"
    assert figures['playbook_learning_listed{kind="playbooks"}'] == "1.0"
    assert figures['playbook_learning_evicted_total{kind="texts"}'] == "0.0"


async def test_without_a_learning_service_the_answer_says_so_and_metrics_say_it_is_down(settings, nats_server) -> None:
    # The engine's other services made the streams a web server waits for (it makes none).
    async with running_engine(settings, ALL_SERVICES - {"learning"}) as engine, web_replica(settings) as server:
        assert engine.caller.credential is not None
        admin = engine.caller.credential
        async with aiohttp.ClientSession(headers=caller_headers(admin)) as http:
            async with http.get(f"{server.url}/api/insights") as response:
                body = await response.json()
            async with http.get(f"{server.url}/metrics") as scraped:
                text = await scraped.text()
    assert response.status == 503 and body["error"]["code"] == "engine_unavailable"
    assert "learning service did not answer" in body["error"]["message"]
    assert scraped.status == 200
    assert "playbook_learning_up 0.0" in text.splitlines() and "playbook_learning_lag_events" not in text
