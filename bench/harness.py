"""What every benchmark shares: a private nats-server, the engine in-process, timing and reports.

A benchmark prints a ratio against a floor measured in the same process and the same
run, so the figure means the same on a laptop and on CI.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from app.root import ALL_SERVICES, Running, serve
from services.embedded import free_port, greets, server_binary
from services.identity.bootstrap import ensure_local_admin
from services.identity.credentials import TOKEN_FILE, read_secret
from services.settings import Settings

RESULTS_DIR = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """Where the figures were taken: they mean little without it."""
    try:
        version = subprocess.run([server_binary(), "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        version = f"unknown ({err})"
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "nats_server": version,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def nats_server() -> Iterator[str]:
    """A nats-server with JetStream on a free port and a throwaway store dir; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="pb-bench-") as store:
        port = free_port()
        process = subprocess.Popen(
            [server_binary(), "-js", "-sd", store, "-a", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 15
            while not greets(port):
                if process.poll() is not None:
                    raise RuntimeError(f"nats-server exited with {process.returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError("nats-server did not start within 15s")
                time.sleep(0.02)
            yield f"nats://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class InProcess:
    """The engine's services in this process: their connection, and the local admin's token to send commands."""

    nc: NATS
    credential: str


async def ensure_admin(running: Running, home: Path) -> str:
    """The local admin's token in `home` (made if none), as the identity service makes it."""
    made = await ensure_local_admin(home, running.identity.store, running.identity.registry, name="bench",
                                    now=datetime.now(timezone.utc))
    return made.credential


def admin_token(home: str | Path) -> str:
    """The local admin's token that a ServicesProcess (or `playbook up`) wrote to `home`."""
    token = read_secret(Path(home), TOKEN_FILE)
    if not token:
        raise RuntimeError(f"no local admin token in {home}")
    return token


@contextlib.asynccontextmanager
async def engine(url: str, which: frozenset[str] = ALL_SERVICES, timeout: float = 30.0,
                 environ: Mapping[str, str] | None = None) -> AsyncIterator[InProcess]:
    """The engine's services running in this process and event loop, with a home of their own (and settings from
    `environ` over the process's)."""
    stop = asyncio.Event()
    ready: asyncio.Future[InProcess] = asyncio.get_running_loop().create_future()
    with tempfile.TemporaryDirectory(prefix="pb-bench-home-") as home:
        async def on_ready(running: Running) -> None:
            ready.set_result(InProcess(running.nc, await ensure_admin(running, Path(home))))

        settings = Settings.from_environ({**os.environ, **(environ or {}), "NATS_URL": url, "PLAYBOOK_HOME": home})
        task = asyncio.create_task(serve(settings, which, ready=on_ready, stop=stop))
        try:
            done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if ready not in done:
                if task.done():
                    task.result()  # raises why the services did not start
                raise TimeoutError(f"engine services did not start within {timeout}s")
            yield ready.result()
        finally:
            stop.set()
            await task


async def timed(op: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Seconds one awaited call took, and its result."""
    began = time.perf_counter()
    result = await op()
    return time.perf_counter() - began, result


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), nearest rank; plenty for a benchmark table."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def print_machine(info: dict[str, Any]) -> None:
    print(f"machine: {info['cpu_count']} cpu ({info['processor']}), python {info['python']}, "
          f"{info['nats_server']}, {info['platform']}")


def write_result(name: str, result: dict[str, Any], path: str | Path | None = None) -> Path:
    """Write the result as JSON (default `bench/results/<name>.json`); returns where."""
    target = Path(path) if path else RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return target


def wait_playbook(name: str, steps: int, seconds: float, **each: str) -> str:
    """YAML of `steps` wait steps of `seconds`; `each` adds the same keys to every step."""
    lines = [f"name: {name}", "steps:"]
    for i in range(steps):
        lines += [f"  - id: s{i:04d}", "    action: wait", *(f"    {key}: {value}" for key, value in each.items()),
                  "    args:", f"      seconds: {seconds}"]
    return "\n".join(lines) + "\n"


def finish(name: str, result: dict[str, Any], path: str | None, report: Callable[[dict[str, Any]], None]) -> int:
    """Print the figures and where they were written; the benchmark's exit code."""
    report(result)
    print(f"result: {write_result(name, result, path)}")
    return 0


def run_async(main: Awaitable[int]) -> int:
    """Run a benchmark's coroutine; keeps the services' INFO chatter out of the figures."""
    import logging
    logging.basicConfig(level=os.environ.get("PLAYBOOK_LOG", "WARNING"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The floors' raw appends are no events: the learning service, which reads every run, would warn of each.
    logging.getLogger("services.learning.service").setLevel(logging.ERROR)
    return asyncio.run(main)  # type: ignore[arg-type]


# -- the engine as processes of its own: for RSS, crashes and whole-process timings ------

ROOT = Path(__file__).resolve().parents[1]

# The chosen services (comma-separated in PB_BENCH_SERVICES), alone in a process;
# prints "ready" once they consume.
SERVICES_SCRIPT = """\
import asyncio, logging, os, sys
from pathlib import Path
from app.root import run_engine, serve
from bench.harness import ensure_admin
from services.settings import Settings
logging.basicConfig(level=os.environ.get("PLAYBOOK_LOG", "WARNING"), stream=sys.stderr)
async def ready(running):
    if running.identity is not None:   # an executor alone, under a login of its own, makes no token
        await ensure_admin(running, Path(os.environ["PLAYBOOK_HOME"]))
    print("ready", flush=True)
run_engine(serve(Settings.from_environ(os.environ), os.environ["PB_BENCH_SERVICES"].split(","), ready=ready))
"""


def python_env(**extra: str) -> dict[str, str]:
    """This environment, with the repository importable, plus `extra`."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


class ServicesProcess:
    """Some of the engine's services in a child process, as `python -m services.<name>` runs them."""

    def __init__(self, url: str, which: Sequence[str], home: str | Path, **env: str) -> None:
        self.which = tuple(which)
        environment = python_env(NATS_URL=url, PLAYBOOK_HOME=str(home), PB_BENCH_SERVICES=",".join(self.which), **env)
        self.process = subprocess.Popen([sys.executable, "-c", SERVICES_SCRIPT], cwd=ROOT, env=environment,
                                        stdout=subprocess.PIPE, text=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ready(self, timeout: float = 30.0) -> None:
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout)  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise RuntimeError(f"services {self.which} did not start (exit {self.process.poll()})")

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        from services.embedded import stop_process
        stop_process(self.process, grace=20)


def proc_status_bytes(pid: int, field: str) -> int:
    """A size from /proc/<pid>/status (`VmRSS`, `VmHWM`: the peak RSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for pid {pid}")


class RssSampler:
    """The summed VmRSS of some processes, read every `interval` seconds while it runs; keeps the peak."""

    def __init__(self, pids: Sequence[int], interval: float = 0.05) -> None:
        self.pids, self.interval = list(pids), interval
        self.peak, self.samples = 0, 0
        self._task: asyncio.Task[None] | None = None

    def read(self) -> int:
        return sum(proc_status_bytes(pid, "VmRSS") for pid in self.pids)

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.read())
            self.samples += 1
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, self.read())


class RunEnds:
    """When and how each run ended, from a core subscription to the terminal subjects of every run.

    One message per run, whatever its length, so watching costs the runs nothing.
    """

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.ended: dict[str, tuple[str, float]] = {}   # run id -> (terminal event, perf_counter)
        self._changed = asyncio.Event()
        self._subs: list[Any] = []

    async def start(self) -> RunEnds:
        from events import subjects
        from events.run import TERMINAL_EVENTS
        for kind in TERMINAL_EVENTS:
            self._subs.append(await self.nc.subscribe(subjects.events_of_type(kind.__name__), cb=self._on_end))
        await self.nc.flush()
        return self

    async def _on_end(self, msg: Any) -> None:
        _, _, run_id, kind = msg.subject.split(".", 3)
        self.ended.setdefault(run_id, (kind, time.perf_counter()))
        self._changed.set()

    async def wait(self, run_ids: Sequence[str], timeout: float) -> None:
        """Until every run has ended; TimeoutError names how many have not."""
        pending = {r for r in run_ids if r not in self.ended}
        try:
            async with asyncio.timeout(timeout):
                while pending:
                    self._changed.clear()
                    pending = {r for r in pending if r not in self.ended}
                    if pending:
                        await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"{len(pending)} of {len(run_ids)} runs did not end within {timeout:.0f}s") from None

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f} MiB"
