"""as-run: the engine as users run it, `playbook up` as a process driven by the `playbook` CLI as processes.

`playbook up` (embedded NATS, every service, the web server and its projector) runs with a
home of its own and one SSE client on the run list stream. Each figure beside its floor,
measured in the same run against the same server:
- CLI start (`--help`, `status RUN`, `run` of one step): whole processes, median; floor: an
  interpreter that starts and exits (`python -c pass`).
- per step, noop and shell `true`: (`playbook run` of N steps - of one step) / (N - 1); floor:
  the run's events per step as raw publish-with-ack appends, plus one `true` process for shell.
- 20 `playbook run` processes at once, 10 shell steps each: wall until all end; floor: 20 processes
  at once that each start an interpreter and run `true` 10 times.
- `playbook validate` of 10,000 and 100,000 steps, seconds and peak memory: `bench big`'s (a process loading
  the same YAML).
- a 10,000-step playbook (`bench huge`'s) started by `playbook run --detach` while a probe sends a refused
  command every 20 ms: its steps/s (floor: a step's raw appends), the probe's p99 while it starts and while
  it runs (floor: the probe's p99 against the idle engine, just before).
For steps/s, more is better: its ratio is the floor's rate over the figure, so every ratio reads "times the
floor's cost".
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import nats

from bench import big, huge
from bench.harness import ROOT, finish, machine, median, print_machine, print_table, python_env
from bench.steps import append_floor, playbook, subprocess_floor
from services.embedded import free_port, stop_process
from services.identity.credentials import TOKEN_FILE, read_secret
from services.settings import Settings
from ui.client import EngineClient
from ui.sse_reader import sse_messages

NAME = "as-run"
HELP = ("`playbook up` as a process driven by the CLI as processes: CLI start, per step, 20 callers, validate, "
        "a 10,000-step run")
# What the issue asks of each figure, in its own unit (ms, or s for validate and the 20 callers).
TARGETS = {"help_ms": 80.0, "status_ms": 150.0, "run_one_ms": 250.0, "noop_step_ms": 1.5, "shell_step_ms": 3.0,
           "concurrent_s": 1.5, "validate_10000_s": 1.0, "validate_10000_mb": 150.0, "validate_100000_s": 10.0,
           "huge_steps_per_s": 300.0, "huge_starting_p99_ms": 50.0, "huge_running_p99_ms": 50.0}
MORE_IS_BETTER = {"huge_steps_per_s"}
FLOOR_SPAWNS = "import subprocess, sys\nfor _ in range(int(sys.argv[1])): subprocess.run(['true'])"
SIGN_IN = re.compile(r"sign in to the dashboard .*: (http://\S+)/#code=")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=100, help="steps of the per-step runs (default 100)")
    parser.add_argument("--repetitions", type=int, default=5, help="processes per figure and floor; the median counts")
    parser.add_argument("--callers", type=int, default=20, help="concurrent `playbook run` processes (default 20)")
    parser.add_argument("--caller-steps", type=int, default=10, help="shell steps in each caller's run (default 10)")
    parser.add_argument("--validate-steps", default="10000,100000",
                        help="comma-separated playbook sizes to validate (default 10000,100000; empty for none)")
    parser.add_argument("--huge-steps", type=int, default=10_000,
                        help="steps of the big run started meanwhile (default 10,000; 0 for none)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


class Up:
    """`playbook up` in a child process with a home of its own; its stdout is read on a thread."""

    def __init__(self, home: Path) -> None:
        # Users' Python keeps compiled modules: PYTHONDONTWRITEBYTECODE would time the compiler, not the CLI.
        env = {k: v for k, v in python_env().items()
               if not k.startswith(("NATS_", "PLAYBOOK_")) and k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONUNBUFFERED="1", PLAYBOOK_HOME=str(home), PLAYBOOK_NATS_PORT=str(free_port()),
                   PLAYBOOK_LOG="WARNING", PLAYBOOK_STEP_USER=os.environ.get("PLAYBOOK_STEP_USER", ""))
        self.env = env
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-m", "ui.cli.main", "up", "--http-port", str(free_port())],
                                        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.append(line.decode(errors="replace"))

    async def web_url(self, timeout: float = 60.0) -> str:
        """The dashboard's URL, once `up` says it is ready (its sign-in link)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if found := SIGN_IN.search(line):
                    return found[1]
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"`playbook up` did not get ready (exit {self.process.poll()}):\n{''.join(self.lines)}")

    def stop(self) -> None:
        stop_process(self.process, grace=20)


class Cli:
    """`playbook ...` as a user types it: the installed console script when there is one."""

    def __init__(self, env: dict[str, str]) -> None:
        script = Path(sys.executable).parent / "playbook"
        self.argv = [str(script)] if script.exists() else [sys.executable, "-m", "ui.cli.main"]
        self.env = env

    def command(self, *args: str) -> list[str]:
        return [*self.argv, *args]

    async def timed(self, *args: str) -> float:
        """Seconds of one whole `playbook ARGS` process; it must succeed."""
        seconds, failures = await timed_processes([self.command(*args)], self.env)
        if failures:
            raise RuntimeError(failures[0])
        return seconds


async def timed_processes(commands: Sequence[list[str]], env: dict[str, str] | None = None) -> tuple[float, list[str]]:
    """Seconds until the last of these processes, all started at once, ended; what each failed one said."""
    began = time.perf_counter()
    processes = [await asyncio.create_subprocess_exec(*argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                                      stderr=subprocess.PIPE) for argv in commands]
    outcomes = await asyncio.gather(*(p.communicate() for p in processes))
    seconds = time.perf_counter() - began
    failures = [f"{argv[1:]} exited {p.returncode}: {err.decode().strip()[-500:]}"
                for argv, p, (_, err) in zip(commands, processes, outcomes) if p.returncode != 0]
    return seconds, failures


async def medians(times: int, *runs: Any) -> list[float]:
    """The median seconds of each coroutine factory, run `times` times interleaved, so drift hits all alike."""
    samples: list[list[float]] = [[] for _ in runs]
    for _ in range(times):
        for i, run in enumerate(runs):
            samples[i].append(await run())
    return [statistics.median(s) for s in samples]


@contextlib.asynccontextmanager
async def sse_client(base: str, token: str) -> AsyncIterator[list[int]]:
    """One dashboard attached to the run list stream for the whole measurement; yields its message count."""
    count = [0]
    session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
    response = await session.get(f"{base}/api/runs/stream", timeout=aiohttp.ClientTimeout(total=None))
    if response.status != 200:
        await session.close()
        raise RuntimeError(f"the SSE client was refused: HTTP {response.status}")

    async def read() -> None:
        async for _ in sse_messages(response):
            count[0] += 1

    reader = asyncio.create_task(read())
    try:
        yield count
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await reader
        response.close()
        await session.close()


async def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    books = folder / "playbooks"
    books.mkdir()
    for kind in ("noop", "shell"):
        (books / f"{kind}-1.yaml").write_text(playbook(kind, 1))
        (books / f"{kind}-{args.steps}.yaml").write_text(playbook(kind, args.steps))
    (books / "callers.yaml").write_text(playbook("shell", args.caller_steps))
    up = Up(folder / "home")
    try:
        base = await up.web_url()
        settings = Settings.from_environ(up.env)
        token = read_secret(settings.home, TOKEN_FILE)
        if token is None:
            raise RuntimeError("`playbook up` wrote no local admin token")
        cli = Cli(up.env)
        async with sse_client(base, token) as sse:
            result = await measure_engine(args, cli, books, settings)
            if args.huge_steps:
                result["huge"] = await measure_huge(args, cli, settings, token, up.process.pid)
            result["sse_messages"] = sse[0]
        if args.huge_steps:
            add_huge_figures(result)
        result["ratios"] = {name: f["ratio"] for name, f in result["figures"].items()}
    finally:
        up.stop()
    return result


async def measure_engine(args: argparse.Namespace, cli: Cli, books: Path, settings: Settings) -> dict[str, Any]:
    n, reps = args.steps, args.repetitions
    await cli.timed("run", str(books / "noop-1.yaml"), "--run-id", "asrun-status")   # warm-up, and a run to read
    await cli.timed("run", str(books / f"shell-{n}.yaml"))

    async def interpreter() -> float:
        return (await timed_processes([[sys.executable, "-c", "pass"]]))[0]

    failures: list[str] = []

    async def callers() -> float:
        seconds, failed = await timed_processes([cli.command("run", str(books / "callers.yaml"))] * args.callers,
                                                cli.env)
        failures.extend(failed)
        return seconds

    async def callers_floor() -> float:
        return (await timed_processes([[sys.executable, "-c", FLOOR_SPAWNS, str(args.caller_steps)]] * args.callers))[0]

    floor, help_s, status_s, run_one_s = await medians(
        reps, interpreter, lambda: cli.timed("--help"), lambda: cli.timed("status", "asrun-status"),
        lambda: cli.timed("run", str(books / "noop-1.yaml")))
    noop_1, noop_n, shell_1, shell_n = await medians(
        reps, *(lambda book=book: cli.timed("run", str(books / book))
                             for book in ("noop-1.yaml", f"noop-{n}.yaml", "shell-1.yaml", f"shell-{n}.yaml")))
    appends, events_per_step = await step_floors(settings, n)
    spawns = median(await subprocess_floor(n))

    callers_s, callers_floor_s = await medians(reps, callers, callers_floor)
    steps = max(1, n - 1)
    figures = {
        "help_ms": (help_s * 1000, floor * 1000),
        "status_ms": (status_s * 1000, floor * 1000),
        "run_one_ms": (run_one_s * 1000, floor * 1000),
        "noop_step_ms": ((noop_n - noop_1) / steps * 1000, events_per_step * appends * 1000),
        "shell_step_ms": ((shell_n - shell_1) / steps * 1000, (events_per_step * appends + spawns) * 1000),
        "concurrent_s": (callers_s, callers_floor_s),
    }
    sizes = [int(s) for s in args.validate_steps.split(",") if s.strip()]
    validated = [big.measure_size(size, max(1, reps // 2), books) for size in sizes]
    for v in validated:
        figures[f"validate_{v['steps']}_s"] = (v["validate_s"], v["floor_s"])
        figures[f"validate_{v['steps']}_mb"] = (v["peak_rss_bytes"] / 2**20, v["floor_peak_rss_bytes"] / 2**20)
    return {
        "benchmark": NAME, "steps": n, "repetitions": reps, "callers": args.callers, "caller_steps": args.caller_steps,
        "machine": machine(),
        "floors": {"interpreter_ms": floor * 1000, "append_ms": appends * 1000, "subprocess_ms": spawns * 1000,
                   "events_per_step": events_per_step, "callers_s": callers_floor_s},
        "caller_failures": failures,
        "figures": {name: figure(name, value, low) for name, (value, low) in figures.items()},
        "validate": validated,
    }


def figure(name: str, value: float, floor: float) -> dict[str, Any]:
    """A figure with its floor, its ratio (times the floor's cost) and the issue's target."""
    ratio = (floor / value if name in MORE_IS_BETTER else value / floor) if value > 0 and floor > 0 else None
    return {"value": value, "floor": floor, "ratio": ratio, "target": TARGETS.get(name)}


def engine_pids(up_pid: int) -> list[int]:
    """`up` and the services it runs in processes of their own (not its nats-server): whose memory counts."""
    children = Path(f"/proc/{up_pid}/task/{up_pid}/children").read_text().split()
    return [up_pid, *(int(pid) for pid in children
                      if b"app.service_process" in Path(f"/proc/{pid}/cmdline").read_bytes())]


async def measure_huge(args: argparse.Namespace, cli: Cli, settings: Settings, token: str, up_pid: int
                       ) -> dict[str, Any]:
    nc = await nats.connect(settings.engine_url(), **settings.nats_login("engine"))   # it watches pb.run.> as is
    try:
        return await huge.measure_run(nc, token, engine_pids(up_pid), args.huge_steps, 1800.0, cli.argv, cli.env)
    finally:
        await nc.close()


def add_huge_figures(result: dict[str, Any]) -> None:
    """The big run's figures beside the others: its rate against a step's raw appends, the probe's p99 while it
    starts and runs against the idle engine's."""
    run, floors = result["huge"], result["floors"]
    idle_p99 = run["probe"]["idle"]["p99_ms"]
    step_floor_s = floors["append_ms"] * floors["events_per_step"] / 1000
    result["figures"].update({
        "huge_steps_per_s": figure("huge_steps_per_s", run["steps_per_second"], 1 / step_floor_s),
        **{f"huge_{phase}_p99_ms": figure(f"huge_{phase}_p99_ms", run["probe"][phase]["p99_ms"], idle_p99)
           for phase in ("starting", "running") if phase in run["probe"]},
    })


async def step_floors(settings: Settings, steps: int) -> tuple[float, float]:
    """Seconds per raw append on the engine's own server, and the events a noop step of the last run made."""
    nc = await nats.connect(settings.engine_url(), **settings.nats_login("engine"))
    try:
        client = EngineClient(nc, None)
        runs = [r for r in await client.list_runs() if r.playbook == "bench-noop"]
        events = await client.events(max(runs, key=lambda r: r.started_at).run_id) if runs else []
        per_step = max(1.0, (len(events) - 2) / steps) if events else 3.0   # a run's start and end are not its steps
        payload = b"x" * 400
        await append_floor(nc, 3 * steps, payload)   # warm
        return median(await append_floor(nc, 3 * steps, payload)), per_step
    finally:
        await nc.close()


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    floors = result["floors"]
    print(f"`playbook up` as a process, one SSE client attached ({result['sse_messages']} messages); the CLI as "
          f"processes, median of {result['repetitions']}; per-step runs of {result['steps']} steps")
    print(f"floors: interpreter start {floors['interpreter_ms']:.0f} ms, raw append {floors['append_ms']:.3f} ms "
          f"x {floors['events_per_step']:.1f} events/step, `true` process {floors['subprocess_ms']:.2f} ms, "
          f"{result['callers']} interpreters x {result['caller_steps']} `true` at once {floors['callers_s']:.2f} s")
    print()
    rows = []
    for name, f in result["figures"].items():
        target = f["target"]
        met = "" if target is None else (
            "met" if (f["value"] >= target if name in MORE_IS_BETTER else f["value"] <= target) else "missed")
        rows.append((name, f"{f['value']:.3f}", f"{f['floor']:.3f}", f"{f['ratio']:.1f}x" if f["ratio"] else "-",
                     "-" if f["target"] is None else f"{f['target']:g}", met))
    print_table(["figure", "value", "floor", "ratio", "target", ""], rows)
    if (run := result.get("huge")) is not None:
        probes = ", ".join(f"{phase} {p['p50_ms']:.1f}/{p['p99_ms']:.1f}/{p['max_ms']:.1f}"
                           for phase, p in run["probe"].items())
        print(f"huge: {run['steps']} steps ({run['playbook_bytes'] / 2**20:.1f} MiB of YAML), `playbook run --detach` "
              f"{run['cli_start_seconds']:.2f} s, run {run['run_seconds']:.1f} s; `up` peak RSS (its learning process "
              f"too) {run['engine_peak_rss_bytes'] / 2**20:.0f} MiB; probe p50/p99/max ms: {probes}")
    for failure in result["caller_failures"]:
        print(f"a caller failed: {failure}")
    print()
    print("ratios: " + ", ".join(f"{name} {f['ratio']:.1f}x floor" for name, f in result["figures"].items()
                                 if f["ratio"]))


async def run(args: argparse.Namespace) -> int:
    if args.steps < 2 or args.repetitions < 1 or args.callers < 1 or args.caller_steps < 1 or args.huge_steps < 0:
        raise SystemExit("--steps must be at least 2; --repetitions, --callers and --caller-steps at least 1; "
                         "--huge-steps 0 or more")
    with tempfile.TemporaryDirectory(prefix="pb-as-run-") as folder:
        result = await measure(args, Path(folder))
    return finish(NAME, result, args.json, report)
