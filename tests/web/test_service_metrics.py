"""`/metrics` says which worker service no replica serves and what waits for it: a resilience service stopped
for minutes leaves failed steps waiting for their retry decision, and the operator sees why."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

import aiohttp
import nats
import pytest

from app.root import ALL_SERVICES, serve
from events.commands import StartRun
from events.identity import caller_headers
from events.run import StepFailed, StepRetryScheduled
from services.identity.credentials import TOKEN_FILE, read_secret
from services.identity.nats_users import ENGINE_CONSUMERS
from services.read import WORKERS
from services.settings import Settings, connect_options
from tests.helpers import playbook_yaml, until, until_event, web_replica
from ui.client import EngineClient

pytestmark = pytest.mark.integration

FLAKY = playbook_yaml([{"id": "flaky", "action": "shell", "timeout_seconds": 10, "args": {"command": "exit 1"},
                        "retry": {"max_attempts": 2, "base_delay": 0.1, "retry_on_errors": ["unknown"]}}])


@contextlib.asynccontextmanager
async def serving(settings: Settings, services: Iterable[str]) -> AsyncIterator[None]:
    stop, ready = asyncio.Event(), asyncio.Event()

    async def on_ready(_running: object) -> None:
        ready.set()
    task = asyncio.create_task(serve(settings, services, ready=on_ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 15)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def scraped(url: str, admin: str) -> dict[str, float]:
    async with aiohttp.ClientSession(headers=caller_headers(admin)) as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    return {name: float(value) for name, value in (line.split(" ", 1) for line in text.splitlines()
                                                   if line.startswith("playbook_service_"))}


def test_the_workers_are_the_engine_consumers() -> None:
    assert sorted(WORKERS.values()) == sorted(ENGINE_CONSUMERS)


async def test_metrics_say_a_stopped_service_is_down_with_its_backlog_and_up_again_once_it_caught_up(
        settings: Settings) -> None:
    async with serving(settings, ALL_SERVICES - {"resilience", "learning"}):
        async with serving(settings, {"resilience"}):
            pass                                  # started once, then stopped by its operator
        admin = read_secret(settings.home, TOKEN_FILE)
        assert admin is not None
        nc = await nats.connect(**connect_options(settings.engine_url()))
        client = EngineClient(nc, admin)
        try:
            async with web_replica(settings) as web:
                reply = await client.send(StartRun(playbook=FLAKY))
                await until_event(client, reply.run_id, StepFailed)

                async def resilience_down_with_work() -> bool:
                    figures = await scraped(web.url, admin)
                    return (figures.get('playbook_service_up{service="resilience"}') == 0
                            and figures.get('playbook_service_backlog_events{service="resilience"}', 0) >= 1)
                await until(resilience_down_with_work, what="resilience down, its work waiting")
                figures = await scraped(web.url, admin)
                assert figures['playbook_service_up{service="executor"}'] == 1
                assert figures['playbook_service_up{service="run"}'] == 1

                async with serving(settings, {"resilience"}):
                    await until_event(client, reply.run_id, StepRetryScheduled)

                    async def resilience_caught_up() -> bool:
                        figures = await scraped(web.url, admin)
                        return (figures.get('playbook_service_up{service="resilience"}') == 1
                                and figures.get('playbook_service_backlog_events{service="resilience"}') == 0)
                    await until(resilience_caught_up, what="resilience up with nothing waiting")
        finally:
            await nc.close()
