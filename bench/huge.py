"""huge: a 10,000-step playbook started with `playbook run --detach` (a process), against an engine in its own.

The text is about 2 MB, twice what one NATS message holds: the CLI uploads it and the run
pins it by digest. While the CLI starts it and while it runs, a probe sends a command the
run service must answer (PauseRun of a run that does not exist: verified, looked up,
refused) every 20 ms; its latency is compared with the same probe against the idle engine,
measured just before in the same run (the floor). The run's rate is its steps over the
time from RunStarted to RunCompleted; the engine process's peak RSS is sampled throughout.
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS

from bench.harness import (
    ROOT, RssSampler, RunEnds, ServicesProcess, admin_token, finish, machine, median, mib, nats_server, percentile,
    print_machine, print_table, python_env,
)
from app.root import ALL_SERVICES
from events import subjects
from events.commands import PauseRun
from ui.client import EngineClient

NAME = "huge"
HELP = "a 10,000-step playbook started from the CLI: command latency meanwhile (p99, against idle) and steps/s"
TARGETS = {"command_p99_ms": 50.0, "steps_per_second": 300.0}
PROBE_EVERY = 0.02           # seconds between probe commands
GROUP_EVERY, GROUP_SIZE = 20, 5  # in each block of 20 steps, 5 run as one parallel group


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=10_000, help="steps in the playbook (default 10,000)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds the run may take before giving up")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def playbook_text(steps: int) -> str:
    """`steps` noop steps, each with a realistic name; in every block of 20, five run as one parallel group."""
    lines = ["name: bench-huge", "description: a generated playbook of many steps", "steps:"]
    for i in range(steps):
        lines += [f"  - id: s{i:06d}", f"    name: step {i:06d} of a large generated playbook, padded to a realistic "
                  "size with words an operator would write about what it does", "    action: noop",
                  f"    args: {{outputs: {{n: {i}}}}}"]
        if i % GROUP_EVERY >= GROUP_EVERY - GROUP_SIZE:
            lines.append(f"    parallel_group: wave_{i // GROUP_EVERY}")
    return "\n".join(lines) + "\n"


class Probe:
    """Sends one refused command every PROBE_EVERY seconds and keeps each round trip, labelled by phase."""

    def __init__(self, client: EngineClient) -> None:
        self.client, self.phase = client, "idle"
        self.samples: dict[str, list[float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            began = time.perf_counter()
            reply = await self.client.send(PauseRun(run_id="no-such-run"), timeout=30)
            assert not reply.accepted and reply.error is not None and reply.error.code == "unknown_run", reply
            self.samples.setdefault(self.phase, []).append(time.perf_counter() - began)
            await asyncio.sleep(PROBE_EVERY)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def _figures(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {"n": len(ms), "p50_ms": median(ms), "p99_ms": percentile(ms, 99), "max_ms": max(ms)}


async def measure(url: str, steps: int, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pb-bench-huge-") as home:
        engine = ServicesProcess(url, sorted(ALL_SERVICES), home)
        nc = await nats.connect(url, name="bench-huge")
        try:
            await engine.ready(60)
            cli_env = python_env(NATS_URL=url, PLAYBOOK_HOME=home)
            result = await measure_run(nc, admin_token(home), [engine.pid], steps, timeout,
                                       [sys.executable, "-m", "ui.cli.main"], cli_env)
            return {"benchmark": NAME, "machine": machine(), **result}
        finally:
            await nc.close()
            engine.stop()


async def measure_run(nc: NATS, token: str | None, engine_pids: list[int], steps: int, timeout: float,
                      cli: list[str], cli_env: dict[str, str]) -> dict[str, Any]:
    """The huge playbook started by `cli run FILE --detach` against a running engine (its processes `engine_pids`),
    probed idle for 3 s first, then while it starts and runs."""
    text = playbook_text(steps)
    with tempfile.TemporaryDirectory(prefix="pb-bench-huge-") as folder:
        book = Path(folder) / "huge.yaml"
        book.write_text(text)
        client = EngineClient(nc, token)
        ends = await RunEnds(nc).start()
        started_at: dict[str, float] = {}

        async def on_started(msg: Any) -> None:
            started_at.setdefault(msg.subject.split(".")[2], time.perf_counter())

        started_sub = await nc.subscribe(subjects.events_of_type("RunStarted"), cb=on_started)
        probe = Probe(client)
        probe.start()
        await asyncio.sleep(3.0)                          # the floor: the idle engine answering the probe
        async with RssSampler(engine_pids) as rss:
            probe.phase = "starting"
            began = time.perf_counter()
            started = await asyncio.to_thread(subprocess.run, [*cli, "run", str(book), "--detach"], cwd=ROOT,
                                              env=cli_env, capture_output=True, text=True, timeout=600)
            cli_seconds = time.perf_counter() - began
            if started.returncode != 0:
                raise RuntimeError(f"playbook run failed ({started.returncode}): {started.stderr[-2000:]}")
            run_id = started.stdout.strip()
            probe.phase = "running"
            await ends.wait([run_id], timeout)
        await probe.stop()
        await started_sub.unsubscribe()
        await ends.stop()
    kind, ended = ends.ended[run_id]
    if kind != "RunCompleted":
        raise RuntimeError(f"run {run_id} ended with {kind}")
    run_seconds = ended - started_at[run_id]
    probed = {phase: _figures(samples) for phase, samples in probe.samples.items()}
    return {
        "steps": steps, "playbook_bytes": len(text.encode()), "max_payload": nc.max_payload,
        "cli_start_seconds": cli_seconds, "run_seconds": run_seconds, "steps_per_second": steps / run_seconds,
        "engine_peak_rss_bytes": rss.peak, "probe": probed, "targets": TARGETS,
        "ratios": {f"{phase}_p99_vs_idle": fig["p99_ms"] / probed["idle"]["p99_ms"]
                   for phase, fig in probed.items() if phase != "idle"},
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    print(f"{result['steps']} steps, {result['playbook_bytes'] / 2**20:.1f} MiB of YAML "
          f"(one NATS message: {result['max_payload'] / 2**20:.1f} MiB); engine peak RSS "
          f"{mib(result['engine_peak_rss_bytes'])}")
    idle = result["probe"]["idle"]
    rows: list[list[Any]] = [["phase", "commands", "p50 ms", "p99 ms", "max ms", "p99 / idle p99"]]
    for phase, fig in result["probe"].items():
        rows.append([phase, fig["n"], f"{fig['p50_ms']:.1f}", f"{fig['p99_ms']:.1f}", f"{fig['max_ms']:.1f}",
                     f"{fig['p99_ms'] / idle['p99_ms']:.1f}x"])
    print_table(rows[0], rows[1:])
    print(f"`playbook run --detach` (whole process, upload and start): {result['cli_start_seconds']:.2f} s")
    print(f"run: {result['run_seconds']:.1f} s, {result['steps_per_second']:.0f} steps/s "
          f"(target >= {TARGETS['steps_per_second']:.0f}); command p99 target <= {TARGETS['command_p99_ms']:.0f} ms")


async def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise SystemExit("--steps must be at least 1")
    with nats_server() as url:
        result = await measure(url, args.steps, args.timeout)
    return finish(NAME, result, args.json, report)
