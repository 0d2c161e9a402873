"""Shared fixtures: a real nats-server per test, on a free port, with its own store."""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest

from services.embedded import free_port, greets, server_binary


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
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


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
