"""`playbook projections rebuild`: every web server refolds its views from the first event."""
from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import replace

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from events.commands import StartRun
from events.identity import caller_headers
from tests.helpers import noop, person, playbook_yaml, until, wait_for_end, web_replica

pytestmark = pytest.mark.integration


def cli_env(nats_server, engine) -> dict[str, str]:
    return {"NATS_URL": nats_server.url, "PATH": "", "PLAYBOOK_TOKEN": engine.caller.credential}


async def test_the_cli_rebuilds_the_views_of_a_running_web_server(engine, web_server, nats_server) -> None:
    reply = await engine.send(StartRun(playbook=playbook_yaml([noop("a"), noop("b")])))
    events = await wait_for_end(engine, reply.run_id)
    await web_server.backend.projector.wait_caught_up(10)
    before = web_server.backend.projector.views.runs[reply.run_id]

    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ui.cli.main", "projections", "rebuild", env=cli_env(nats_server, engine),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 0, err.decode()
    assert f"{len(events)} events, 1 runs" in out.decode()
    projector = web_server.backend.projector
    assert projector.applied == len(events) and projector.views.runs[reply.run_id] == before


async def test_without_a_web_server_the_cli_says_so(engine, nats_server) -> None:
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ui.cli.main", "projections", "rebuild", env=cli_env(nats_server, engine),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 4 and "no web server answered" in err.decode()


async def test_rebuilds_asked_at_once_over_http_and_nats_join_one_and_other_requests_are_answered(
        engine, web_server) -> None:
    for _ in range(3):
        reply = await engine.send(StartRun(playbook=playbook_yaml([noop("a")])))
        await wait_for_end(engine, reply.run_id)
    await web_server.backend.projector.wait_caught_up(10)

    async with aiohttp.ClientSession(headers=caller_headers(engine.caller.credential)) as http:
        async def over_http() -> tuple[int, dict]:
            async with http.post(f"{web_server.url}/api/projections/rebuild", json={}) as response:
                return response.status, await response.json()

        async def listing() -> int:
            async with http.get(f"{web_server.url}/api/runs") as response:
                return response.status

        asked = [asyncio.create_task(over_http()) for _ in range(5)]
        asked_by_nats = [asyncio.create_task(engine.rebuild_projections(timeout=30)) for _ in range(2)]
        assert await asyncio.wait_for(listing(), 10) == 200          # not held up behind the rebuilds
        answers = await asyncio.wait_for(asyncio.gather(*asked), 30)
        by_nats = await asyncio.wait_for(asyncio.gather(*asked_by_nats), 30)

    assert {status for status, _ in answers} == {200}
    assert {answer["rebuild"] for _, answer in answers} == {1}          # one rebuild, five askers joined it
    assert {answer["runs"] for _, answer in answers} == {3}
    assert all(answer["ok"] for answer in by_nats) and {a["rebuild"] for a in by_nats} <= {1, 2}
    assert web_server.backend.projector.rebuilds <= 2 and len(web_server.backend.projector.views.runs) == 3


async def test_a_rebuild_is_an_admins(engine, web_server, nats_server) -> None:
    viewer = await person(engine, "vera", "viewer")
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ui.cli.main", "projections", "rebuild",
        env={**cli_env(nats_server, engine), "PLAYBOOK_TOKEN": viewer.caller.credential},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 5 and "vera may not rebuild projections" in err.decode()


async def test_a_scrape_during_a_rebuild_reports_the_figures_from_before_it(engine, settings, nats_server) -> None:
    """Not the half-folded views' counts: a counter that falls, then rises again, is a reset to Prometheus.
    /metrics open to anyone (PLAYBOOK_METRICS=open): no token to check while NATS is away."""
    async with web_replica(replace(settings, metrics_access="open")) as web_server:
        for _ in range(2):
            reply = await engine.send(StartRun(playbook=playbook_yaml([noop("a")], name="counted")))
            await wait_for_end(engine, reply.run_id)
        projector = web_server.backend.projector
        await until(lambda: "counted" in projector.views.metrics.playbooks
                    and projector.views.metrics.playbooks["counted"].runs == 2, what="both runs in the views")

        async def started_total(http: aiohttp.ClientSession) -> float | None:
            async with http.get(f"{web_server.url}/metrics") as response:
                text = await response.text()
                assert response.status == 200, text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "playbook_runs_started_total" and sample.labels == {
                            "playbook": "counted", "dry_run": "false"}:
                        return sample.value
            return None

        async with aiohttp.ClientSession() as http:
            assert await started_total(http) == 2
            nats_server.stop()                                   # the rebuild's fold cannot read the stream meanwhile
            rebuilding = asyncio.create_task(projector.rebuild())
            await until(lambda: projector.views.position == 0 and not projector.caught_up, what="views forgotten")
            assert await started_total(http) == 2
            await nats_server.start()
            await asyncio.wait_for(rebuilding, 30)
            assert await started_total(http) == 2
