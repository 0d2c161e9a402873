"""Shared fixtures: a real nats-server per test, on a free port, with its own store."""
from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import nats
import pytest

from app.cluster import engine_url, local_cluster
from services.embedded import EmbeddedCluster, EmbeddedNats, free_port, greets, server_binary, stop_process
from services.identity.nats_users import ensure_nats_users
from services.settings import CLUSTER_LEASE_SECONDS, Settings
from tests.helpers import running_engine, until, web_replica
from ui.client import EngineClient
from ui.web.app import WebServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a nats-server says so with its marker, so `-m "not integration"` runs fast."""
    for item in items:
        if "nats_server" in getattr(item, "fixturenames", ()) and not (
                item.get_closest_marker("integration") or item.get_closest_marker("e2e")):
            raise pytest.UsageError(f"{item.nodeid} starts a nats-server: mark it integration (or e2e)")
        if "nats_cluster" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("e2e"):
            raise pytest.UsageError(f"{item.nodeid} starts a cluster of nats-servers and kills them: mark it e2e")


class NatsServer:
    """A nats-server process with JetStream; can be stopped and started again on its data.

    `max_file_store` (bytes) gives JetStream that much storage and no more: a store that fills up.
    """

    def __init__(self, store_dir: Path, max_file_store: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.max_file_store = max_file_store

    async def start(self) -> None:
        config = []
        if self.max_file_store is not None:
            path = self.store_dir.parent / f"nats-{self.port}.conf"
            path.write_text(f"jetstream {{ max_file_store: {self.max_file_store} }}\n")
            config = ["-c", str(path)]
        self.process = subprocess.Popen(
            [server_binary(), *config, "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        await until(lambda: asyncio.to_thread(greets, self.port), what=f"nats-server on port {self.port}")

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)


@pytest.fixture
async def secured_nats(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A nats-server taking only the engine's generated users, as `playbook up` starts it: its URL, and the home
    whose credentials/ holds their logins."""
    home = tmp_path / "home"
    server = EmbeddedNats(home, port=free_port(), config=ensure_nats_users(home))
    url = await server.start()
    try:
        yield url, home
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def steps_run_as_the_tester(monkeypatch) -> None:
    """Steps run as the user running the tests, so they can use its temporary directories; a root engine would
    otherwise run them as nobody (tests/integration/test_step_isolation.py checks that default)."""
    monkeypatch.setenv("PLAYBOOK_STEP_USER", pwd.getpwuid(os.geteuid()).pw_name)


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    """Three nats-servers on this machine forming one JetStream cluster, with the engine's NATS users."""
    cluster = local_cluster(tmp_path / "cluster-home", 3)
    await cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_settings(nats_cluster: EmbeddedCluster, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The in-process engine's settings on the cluster: logged in as the engine, streams at 3 replicas, leases that
    outlast an election. Twice the default's: on this 2-core machine under a whole suite, with a hundred runs
    retrying, an election once took over 17 s, and a lease shorter than an election re-runs attempts (as
    docs/execution.md says), which the kill test counts as a failure."""
    marker = request.node.get_closest_marker("ack_wait")
    return replace(Settings.from_environ(os.environ), nats_url=engine_url(nats_cluster), home=tmp_path / "home",
                   ack_wait=float(marker.args[0] if marker else 5), stream_replicas=3,
                   lease_seconds=2 * CLUSTER_LEASE_SECONDS,
                   directory=tmp_path / "directory.yaml", web_host="127.0.0.1", web_port=0)


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
def settings(nats_server: NatsServer, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The in-process engine's settings: this test's server, home (the learning service's store too) and
    directory file.

    `@pytest.mark.ack_wait(seconds)` sets how soon unacknowledged work is redelivered; a
    test that uses the `library` fixture gets that folder as its only stored playbooks.
    """
    marker = request.node.get_closest_marker("ack_wait")
    return replace(Settings.from_environ(os.environ), nats_url=nats_server.url, home=tmp_path / "home",
                   ack_wait=float(marker.args[0] if marker else 2), directory=tmp_path / "directory.yaml",
                   library=(tmp_path / "library",) if "library" in request.fixturenames else (),
                   web_host="127.0.0.1", web_port=0, user="admin")


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """The folder of stored playbooks (and the only one) the web server offers."""
    folder = tmp_path / "library"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[EngineClient]:
    """Every service running in this process, and a client to drive them."""
    async with running_engine(settings) as client:
        yield client


@pytest.fixture
async def web_server(settings: Settings, engine: EngineClient) -> AsyncIterator[WebServer]:
    """The web server (API, SSE, dashboard) beside the in-process engine."""
    async with web_replica(settings) as server:
        yield server
