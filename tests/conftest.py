"""Shared fixtures: a real nats-server per test, on a free port, with its own store."""
from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from aiohttp import web

from events import subjects
from services.app import ALL_SERVICES, serve
from services.embedded import free_port, greets, server_binary, stop_process
from ui.client import EngineClient
from ui.web.app import WebServer, start_web


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not greets(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nats-server on port {port} did not start within {timeout}s")
        time.sleep(0.02)


class NatsServer:
    """A nats-server process with JetStream; can be stopped and started again on its data."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [server_binary(), "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)


@pytest.fixture(autouse=True)
def steps_run_as_the_tester(monkeypatch) -> None:
    """Steps run as the user running the tests, so they can use its temporary directories; a root engine would
    otherwise run them as nobody (tests/integration/test_step_isolation.py checks that default)."""
    monkeypatch.setenv("PLAYBOOK_STEP_USER", pwd.getpwuid(os.geteuid()).pw_name)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def engine_env(nats_server: NatsServer, tmp_path: Path) -> dict[str, str]:
    """Environment for engine processes started by a test (CLI, services)."""
    env = dict(os.environ)
    env.update(NATS_URL=nats_server.url, PLAYBOOK_HOME=str(tmp_path / "home"), PLAYBOOK_ACK_WAIT="2",
               PLAYBOOK_USER="tester", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
async def engine(nats_server: NatsServer, monkeypatch, request, tmp_path: Path) -> AsyncIterator[EngineClient]:
    """Every service running in this process, and a client to drive them.

    `@pytest.mark.ack_wait(seconds)` sets how soon unacknowledged work is redelivered.
    """
    marker = request.node.get_closest_marker("ack_wait")
    monkeypatch.setenv("PLAYBOOK_ACK_WAIT", str(marker.args[0] if marker else 2))
    monkeypatch.setenv("PLAYBOOK_HOME", str(tmp_path / "home"))    # where the learning service keeps its store
    async with running_engine(nats_server.url) as client:
        yield client


@contextlib.asynccontextmanager
async def running_engine(url: str) -> AsyncIterator[EngineClient]:
    """Every service running in this process until the block ends, and a client to drive them."""
    stop, ready = asyncio.Event(), asyncio.Event()

    async def on_ready(_nc) -> None:
        ready.set()

    task = asyncio.create_task(serve(url, set(ALL_SERVICES), ready=on_ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 10)
    client_nc = await nats.connect(url)
    try:
        yield EngineClient(client_nc)
    finally:
        await client_nc.close()
        stop.set()
        await asyncio.wait_for(task, 15)


@pytest.fixture
async def web_server(nats_server: NatsServer, engine: EngineClient, tmp_path: Path) -> AsyncIterator[WebServer]:
    """The web server (API, SSE, dashboard) beside the in-process engine."""
    server = await start_web("127.0.0.1", 0, nats_server.url, tmp_path / "views.msgpack")
    try:
        yield server
    finally:
        await server.close()


async def wait_for_end(client: EngineClient, run_id: str, timeout: float = 30.0) -> list:
    """Follow the run until its terminal event; returns every event, in order."""
    async def collect() -> list:
        return [event async for _, event in client.follow(run_id)]
    return await asyncio.wait_for(collect(), timeout)


@contextlib.asynccontextmanager
async def local_http(routes: list[web.RouteDef]) -> AsyncIterator[str]:
    """An aiohttp server on a free loopback port serving `routes`; yields its base URL."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


async def until_timer_armed(engine: EngineClient, timeout: float = 10.0) -> None:
    """Until some service has stored a durable timer (a message schedule) in the stream."""
    js = engine.nc.jetstream()
    async with asyncio.timeout(timeout):
        while not (await js.stream_info(subjects.RUNS_STREAM, subjects_filter=subjects.TIMER_SUBJECTS)).state.subjects:
            await asyncio.sleep(0.02)
