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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from services.app import ALL_SERVICES, serve
from services.embedded import free_port, greets, server_binary

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


@contextlib.asynccontextmanager
async def engine(url: str, which: frozenset[str] = ALL_SERVICES, timeout: float = 30.0) -> AsyncIterator[NATS]:
    """The engine's services running in this process and event loop; yields their connection."""
    stop = asyncio.Event()
    ready: asyncio.Future[NATS] = asyncio.get_running_loop().create_future()

    async def on_ready(nc: NATS) -> None:
        ready.set_result(nc)

    task = asyncio.create_task(serve(url, set(which), ready=on_ready, stop=stop))
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


def run_async(main: Awaitable[int]) -> int:
    """Run a benchmark's coroutine; keeps the services' INFO chatter out of the figures."""
    import logging
    logging.basicConfig(level=os.environ.get("PLAYBOOK_LOG", "WARNING"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(main)  # type: ignore[arg-type]
