"""sse: how long a stored event takes to reach browsers on the web server's SSE streams, under load.

The engine and the web server share one process and event loop, as `playbook up` runs
them (or not: `--engine-apart`); R runs of short `wait` steps keep events flowing. C clients, in a process of
their own (a browser is not in the server's process; clients in it would add their
parsing to the loop they measure), each hold three streams: the run list, one parked
"probe" run, one busy engine run. The clients' process appends probe events (RunPaused on
the probe runs) with raw JetStream publishes and notes when each was sent and acked;
latency = arrival at a client - publish ack, on one monotonic clock. A raw ordered
consumer on the probe events in the same process is the floor: NATS delivery alone.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from app.root import ALL_SERVICES
from bench.harness import (
    ServicesProcess, admin_token, engine, finish, machine, nats_server, percentile, print_machine, print_table,
    python_env,
)
from events import subjects
from events.codec import encode
from events.commands import StartRun
from events.run import RunPaused
from services.identity.credentials import TOKEN_FILE, write_secret
from services.identity.setup import Identity

from ui.sse_reader import sse_messages

NAME = "sse"
HELP = "latency from append to arrival at SSE clients (run list, one run), 200 runs going, 20 clients"
TARGET_P99_MS = 100.0
BATCH = 50                 # StartRun requests in flight at once
SETUP_ALLOWANCE = 30.0     # seconds the load runs must outlast before the window (clients start, connect)
DRAIN_TIMEOUT = 15.0       # seconds after the window for the last probe events to arrive everywhere

PROBE_PLAYBOOK = """\
name: bench-sse-probe
steps:
  - id: gate
    action: noop
    approval_gate:
      required_approvers: [ops-team]
      timeout_seconds: 86400
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=200, help="runs going during the window (default 200)")
    parser.add_argument("--clients", type=int, default=20, help="SSE clients, three streams each (default 20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of load and probes before the window (default 2)")
    parser.add_argument("--step-seconds", type=float, default=0.5,
                        help="each load step is a `wait` of this long (default 0.5)")
    parser.add_argument("--probe-rate", type=float, default=50.0, help="probe events appended per second (default 50)")
    parser.add_argument("--clients-in-process", action="store_true",
                        help="run the clients in the server's process and event loop (for comparison)")
    parser.add_argument("--engine-apart", action="store_true",
                        help="run the engine's services in a process of their own, the web server alone in this one "
                             "(default: one process, as `playbook up` runs them)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def cpu_times() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of the whole machine, from /proc/stat: was anything else running?"""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    return sum(fields) - idle, steal, sum(fields)


async def loop_lag(into: list[float], interval: float = 0.005) -> None:
    """How late this event loop wakes a sleeper, in ms: time the loop spends on other work."""
    while True:
        began = time.perf_counter()
        await asyncio.sleep(interval)
        into.append((time.perf_counter() - began - interval) * 1000)


def load_playbook_text(steps: int, seconds: float, seed: int) -> str:
    """`steps` waits of `seconds` on average, each drawn from 0.5x..1.5x: runs started
    together drift apart instead of finishing their steps in lockstep, in waves."""
    jitter = random.Random(seed)
    lines = ["name: bench-sse-load", "steps:"]
    for i in range(steps):
        wait = round(seconds * jitter.uniform(0.5, 1.5), 3)
        lines += [f"  - id: w{i:04d}", "    action: wait", "    args:", f"      seconds: {wait:g}"]
    return "\n".join(lines) + "\n"


# -- the clients' side: runs in a process of its own (or, for comparison, in the server's) ------

class Client:
    """One browser: the run list, one probe run and one engine run, each an SSE stream."""

    def __init__(self, base: str, probe_run: str, watch_run: str, window: dict[str, float]) -> None:
        self.base, self.probe_run, self.watch_run, self.window = base, probe_run, watch_run, window
        self.list_arrivals: dict[int, float] = {}     # seq -> perf_counter at arrival
        self.run_arrivals: dict[int, float] = {}
        self.engine_ms: list[float] = []               # arrival (wall) - the event's own `at`
        self.messages = {"list": 0, "run": 0, "engine": 0}
        self.connected = {"list": asyncio.Event(), "run": asyncio.Event(), "engine": asyncio.Event()}
        self.errors: list[str] = []

    async def run(self, http: aiohttp.ClientSession) -> None:
        await asyncio.gather(self._read(http, "/api/runs/stream", "list"),
                             self._read(http, f"/api/runs/{self.probe_run}/stream", "run"),
                             self._read(http, f"/api/runs/{self.watch_run}/stream", "engine"))

    async def _read(self, http: aiohttp.ClientSession, path: str, kind: str) -> None:
        try:
            async with http.get(self.base + path) as response:
                if response.status != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status}")
                async for event, ident, data in sse_messages(response):
                    arrived = time.perf_counter()
                    self.connected[kind].set()
                    self.messages[kind] += 1
                    if kind == "list" and event == "run" and ident:
                        self.list_arrivals[int(ident)] = arrived
                    elif kind == "run" and event == "event" and ident:
                        self.run_arrivals[int(ident)] = arrived
                    elif (kind == "engine" and event == "event"
                          and self.window["start"] <= arrived <= self.window["end"]):
                        at = datetime.fromisoformat(json.loads(data)["event"]["at"]).timestamp()
                        self.engine_ms.append((time.time() - at) * 1000)
            raise RuntimeError(f"{path}: the server ended the stream")
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - reported with the result, not fatal to the others
            self.errors.append(f"{kind}: {err}")
            self.connected[kind].set()


async def clients(config: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    """Connect the clients, probe for warm-up + window, wait for the last probe events; the samples."""
    nc = await nats.connect(config["nats_url"], name="bench-sse-clients")
    js = nc.jetstream(timeout=10.0)
    window = {"start": math.inf, "end": math.inf}
    probe_runs, watch_runs = config["probe_runs"], config["watch_runs"]
    fleet = [Client(config["web_url"], probe_runs[i % len(probe_runs)], watch_runs[i % len(watch_runs)], window)
             for i in range(config["clients"])]
    floor: dict[int, float] = {}

    async def on_floor(msg) -> None:
        floor[msg.metadata.sequence.stream] = time.perf_counter()

    raw = await js.subscribe(subjects.events_of_type("RunPaused"), cb=on_floor, ordered_consumer=True,
                             config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW))
    sessions = [aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
                                      headers={"Authorization": f"Bearer {config['token']}"})
                for _ in fleet]
    readers = [asyncio.create_task(client.run(http)) for client, http in zip(fleet, sessions)]
    probes: dict[int, tuple[float, float, int]] = {}   # seq -> (sent, acked, probe run index)
    publishes: set[asyncio.Task[None]] = set()
    try:
        async with asyncio.timeout(60):
            for client in fleet:
                for ready in client.connected.values():
                    await ready.wait()
        errors = [e for c in fleet for e in c.errors]
        if errors:
            raise RuntimeError(f"clients could not connect: {errors[:3]}")
        say("connected")

        async def publish(i: int) -> None:
            index = i % len(probe_runs)
            run_id = probe_runs[index]
            payload = encode(RunPaused(run_id=run_id, at=datetime.now(timezone.utc), actor="bench-probe",
                                       reason=f"probe {i}"))
            sent = time.perf_counter()
            ack = await js.publish(subjects.run_event(run_id, "RunPaused"), payload)
            probes[ack.seq] = (sent, time.perf_counter(), index)

        lag: list[float] = []
        lag_task: asyncio.Task[None] | None = None
        cpu_before = time.process_time()
        began = time.perf_counter()
        window["start"] = began + config["warmup"]
        window["end"] = window["start"] + config["seconds"]
        said_measuring = False
        i = 0
        while (now := time.perf_counter()) < window["end"]:
            if not said_measuring and now >= window["start"]:
                say("measuring")
                said_measuring = True
                lag_task = asyncio.create_task(loop_lag(lag))
                cpu_before = time.process_time()
            task = asyncio.create_task(publish(i))
            publishes.add(task)
            task.add_done_callback(publishes.discard)
            i += 1
            await asyncio.sleep(max(0.0, began + i / config["probe_rate"] - time.perf_counter()))
        say("measured")
        cpu_window = time.process_time() - cpu_before
        if lag_task is not None:
            lag_task.cancel()
        if publishes:
            await asyncio.gather(*publishes)

        counted = {seq: p for seq, p in probes.items() if window["start"] <= p[0] < window["end"]}
        by_run: dict[int, list[int]] = {}
        for seq, (_, _, index) in counted.items():
            by_run.setdefault(index, []).append(seq)

        def missing() -> int:
            lost = sum(1 for seq in counted if seq not in floor)
            for c in fleet:
                lost += sum(1 for seq in counted if seq not in c.list_arrivals)
                lost += sum(1 for seq in by_run.get(probe_runs.index(c.probe_run), []) if seq not in c.run_arrivals)
            return lost

        drained = time.perf_counter() + DRAIN_TIMEOUT
        while missing() and time.perf_counter() < drained and not any(c.errors for c in fleet):
            await asyncio.sleep(0.05)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for http in sessions:
            await http.close()
        await raw.unsubscribe()
        await nc.close()

    def latencies(arrivals: dict[int, float], seqs) -> tuple[list[float], list[float]]:
        ack_ms, send_ms = [], []
        for seq in seqs:
            if seq in arrivals:
                sent, acked, _ = counted[seq]
                ack_ms.append((arrivals[seq] - acked) * 1000)
                send_ms.append((arrivals[seq] - sent) * 1000)
        return ack_ms, send_ms

    result: dict[str, Any] = {"probe_events": len(counted), "probe_published": len(probes),
                              "missing": missing(), "errors": [e for c in fleet for e in c.errors]}
    samples: dict[str, dict[str, list[float]]] = {"list": {"ack_ms": [], "send_ms": []},
                                                  "run": {"ack_ms": [], "send_ms": []}}
    for c in fleet:
        for kind, arrivals, seqs in (("list", c.list_arrivals, counted),
                                     ("run", c.run_arrivals, by_run.get(probe_runs.index(c.probe_run), []))):
            ack_ms, send_ms = latencies(arrivals, seqs)
            samples[kind]["ack_ms"] += ack_ms
            samples[kind]["send_ms"] += send_ms
    ack_ms, send_ms = latencies(floor, counted)
    samples["floor"] = {"ack_ms": ack_ms, "send_ms": send_ms}
    samples["engine"] = {"at_ms": [ms for c in fleet for ms in c.engine_ms]}
    acks = sorted((acked - sent) * 1000 for sent, acked, _ in counted.values())
    samples["publish_ack"] = {"ms": acks}
    samples["loop_lag"] = {"ms": lag}
    result["samples"] = samples
    result["cpu"] = cpu_window / config["seconds"]
    result["messages"] = {kind: sum(c.messages[kind] for c in fleet) for kind in ("list", "run", "engine")}
    return result


def clients_main() -> None:
    """Entry point of the clients' process: config JSON in argv[1]; progress lines, then the result."""
    def say(line: str) -> None:
        print(line, flush=True)

    result = asyncio.run(clients(json.loads(sys.argv[1]), say))
    print("result " + json.dumps(result), flush=True)


CLIENTS_SCRIPT = "from bench.sse import clients_main; clients_main()"


# -- the server's side ---------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def services(url: str, apart: bool, home: str) -> AsyncIterator[int | None]:
    """The engine's services: in this process and event loop (yields None), or in a child
    process (yields its pid)."""
    if not apart:
        async with engine(url) as running:
            write_secret(Path(home), TOKEN_FILE, running.credential)   # where the apart engine leaves it too
            yield None
        return
    process = ServicesProcess(url, sorted(ALL_SERVICES), home)
    try:
        await process.ready(60)
        yield process.pid
    finally:
        await asyncio.to_thread(process.stop)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def start_runs(client, run_ids: list[str], text: Callable[[int], str]) -> None:
    """Start the runs, BATCH requests in flight at once; run i gets playbook `text(i)`."""
    async def one(i: int) -> None:
        run_id = run_ids[i]
        reply = await client.send(StartRun(playbook=text(i), run_id=run_id), timeout=120)
        if not reply.accepted:
            raise RuntimeError(f"StartRun rejected: {reply.error.message if reply.error else reply}")

    for first in range(0, len(run_ids), BATCH):
        await asyncio.gather(*(one(i) for i in range(first, min(first + BATCH, len(run_ids)))))


async def parked(nc, run_ids: list[str], timeout: float) -> None:
    """Until every run has asked for approval (so the engine leaves it alone)."""
    asked: set[str] = set()
    everyone = asyncio.Event()

    async def on_request(msg) -> None:
        asked.add(subjects.run_id_of(msg.subject))
        if asked >= set(run_ids):
            everyone.set()

    sub = await nc.subscribe(subjects.events_of_type("ApprovalRequested"), cb=on_request)
    try:
        await asyncio.wait_for(everyone.wait(), timeout)
    finally:
        await sub.unsubscribe()


async def lines_of(process: asyncio.subprocess.Process) -> AsyncIterator[str]:
    assert process.stdout is not None
    while line := await process.stdout.readline():
        yield line.decode().rstrip("\n")


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from ui.client import EngineClient
    from services.settings import Settings
    from ui.web.app import start_web

    tag = uuid.uuid4().hex[:6]
    steps = math.ceil((SETUP_ALLOWANCE + args.warmup + args.seconds) / args.step_seconds)
    probe_runs = [f"probe{tag}-{i:03d}" for i in range(args.clients)]
    load_runs = [f"load{tag}-{i:04d}" for i in range(args.runs)]
    config = {"nats_url": url, "clients": args.clients, "probe_runs": probe_runs,
              "watch_runs": load_runs[:args.clients], "warmup": args.warmup, "seconds": args.seconds,
              "probe_rate": args.probe_rate}
    with tempfile.TemporaryDirectory(prefix="pb-bench-sse-") as home:
        client_nc = await nats.connect(url, name="bench-sse-starter")
        identity = await Identity.start(client_nc, lambda _name: [])
        web = None
        try:
            async with services(url, args.engine_apart, home) as engine_pid:
                # It makes no stream: started once the engine has made them. It outlives the engine: it closes
                # once no more events arrive (see close_web).
                web = await start_web(Settings(nats_url=url, home=Path(home), web_port=0), identity)
                config["web_url"] = web.url
                config["token"] = admin_token(home)
                projector = web.backend.projector
                client = EngineClient(client_nc, config["token"])
                waiting = asyncio.create_task(parked(client_nc, probe_runs, 60))
                await asyncio.sleep(0)
                await start_runs(client, probe_runs, lambda _: PROBE_PLAYBOOK)
                await waiting
                texts = [load_playbook_text(steps, args.step_seconds, seed=i) for i in range(args.runs)]
                began = time.perf_counter()
                await start_runs(client, load_runs, texts.__getitem__)
                start_s = time.perf_counter() - began
                outcome = await _with_clients(config, args.clients_in_process, client_nc, projector, engine_pid)
        finally:
            repeats = await close_web(web) if web is not None else 0
            await identity.stop()
            await client_nc.close()
    outcome["projector_cancel_repeats"] = repeats
    return _result(args, steps, start_s, outcome)


async def close_web(web) -> int:
    """`web.close()`; returns how often the projector's cancellation had to be repeated.

    On Python 3.11 a cancel that meets a message arriving in `next_msg` (nats-py wraps it
    in `asyncio.wait_for`) is swallowed, and `Projector.stop()` then waits forever.
    """
    closing = asyncio.create_task(web.close())
    repeats = 0
    while not (await asyncio.wait({closing}, timeout=2.0))[0]:
        task = web.backend.projector._task   # private, but the benchmark must end even so
        if repeats >= 10:
            raise TimeoutError("the web server did not close: its projector ignores cancellation")
        if task is not None and not task.done():
            task.cancel()
        repeats += 1
    closing.result()
    return repeats


async def _with_clients(config: dict[str, Any], in_process: bool, nc, projector, engine_pid: int | None) -> dict[str,
                                                                                                                 Any]:
    """Run the clients; while they measure, note the stream's growth and the projector's lag."""
    js = nc.jetstream()
    server: dict[str, Any] = {"lag_samples": [], "loop_lag_ms": []}
    sampler: asyncio.Task[None] | None = None
    lagger: asyncio.Task[None] | None = None

    async def sample_lag() -> None:
        while True:
            info = await js.stream_info(subjects.RUNS_STREAM)
            server["lag_samples"].append(max(0, info.state.last_seq - projector.position))
            await asyncio.sleep(0.1)

    async def on_line(line: str) -> None:
        nonlocal sampler, lagger
        if line == "measuring":
            server["machine_before"] = cpu_times()
            server["engine_cpu_before"] = cpu_seconds(engine_pid) if engine_pid else None
            lagger = asyncio.create_task(loop_lag(server["loop_lag_ms"]))
            server["seq_before"] = (await js.stream_info(subjects.RUNS_STREAM)).state.last_seq
            server["applied_before"], server["cpu_before"] = projector.applied, time.process_time()
            server["t_before"] = time.perf_counter()
            sampler = asyncio.create_task(sample_lag())
        elif line == "measured":
            server["seq_after"] = (await js.stream_info(subjects.RUNS_STREAM)).state.last_seq
            server["applied_after"], server["cpu_after"] = projector.applied, time.process_time()
            server["t_after"] = time.perf_counter()
            server["machine_after"] = cpu_times()
            server["engine_cpu_after"] = cpu_seconds(engine_pid) if engine_pid else None
            for task in (sampler, lagger):
                if task is not None:
                    task.cancel()

    try:
        if in_process:
            queue: asyncio.Queue[str] = asyncio.Queue()
            task = asyncio.create_task(clients(config, queue.put_nowait))
            while not task.done() or not queue.empty():
                getter = asyncio.create_task(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    await on_line(getter.result())
                else:
                    getter.cancel()
            outcome = task.result()
        else:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CLIENTS_SCRIPT, json.dumps(config), cwd=Path(__file__).resolve().parents[1],
                env=python_env(), stdout=asyncio.subprocess.PIPE, limit=2**28)
            outcome = None
            try:
                async for line in lines_of(process):
                    if line.startswith("result "):
                        outcome = json.loads(line[len("result "):])
                    else:
                        await on_line(line)
            finally:
                if process.returncode is None:
                    try:
                        await asyncio.wait_for(process.wait(), 30)
                    except TimeoutError:
                        process.kill()
                        await process.wait()
            if outcome is None:
                raise RuntimeError(f"the clients' process ended without a result (exit {process.returncode})")
    finally:
        for task in (sampler, lagger):
            if task is not None:
                task.cancel()
    outcome["server"] = server
    return outcome


def _stats(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99),
            "max_ms": max(values) if values else math.nan, "min_ms": min(values) if values else math.nan}


def _result(args: argparse.Namespace, steps: int, start_s: float, outcome: dict[str, Any]) -> dict[str, Any]:
    samples, server = outcome["samples"], outcome["server"]
    window_s = server["t_after"] - server["t_before"]
    streams = {
        "run_list": {"from_ack": _stats(samples["list"]["ack_ms"]), "from_send": _stats(samples["list"]["send_ms"])},
        "one_run": {"from_ack": _stats(samples["run"]["ack_ms"]), "from_send": _stats(samples["run"]["send_ms"])},
        "raw_nats": {"from_ack": _stats(samples["floor"]["ack_ms"]), "from_send": _stats(samples["floor"]["send_ms"])},
        "engine_run": {"from_at": _stats(samples["engine"]["at_ms"])},
    }
    floor_p99 = streams["raw_nats"]["from_ack"]["p99_ms"]
    floor_p50 = streams["raw_nats"]["from_ack"]["p50_ms"]
    ratios = {}
    for name in ("run_list", "one_run"):
        p99 = streams[name]["from_ack"]["p99_ms"]
        ratios[f"{name}_p99_vs_target"] = p99 / TARGET_P99_MS
        ratios[f"{name}_p99_vs_raw_nats"] = p99 / floor_p99 if floor_p99 > 0 else math.nan
        p50 = streams[name]["from_ack"]["p50_ms"]
        ratios[f"{name}_p50_vs_raw_nats"] = p50 / floor_p50 if floor_p50 > 0 else math.nan
    lag = server["lag_samples"]
    (busy0, steal0, total0), (busy1, steal1, total1) = server["machine_before"], server["machine_after"]
    cpus = os.cpu_count() or 1
    return {
        "benchmark": NAME,
        "runs": args.runs,
        "clients": args.clients,
        "streams_per_client": 3,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "step_seconds": args.step_seconds,
        "steps_per_run": steps,
        "probe_rate": args.probe_rate,
        "clients_in_process": args.clients_in_process,
        "engine_apart": args.engine_apart,
        "machine": machine(),
        "start_runs_seconds": start_s,
        "load": {
            "events_per_s": (server["seq_after"] - server["seq_before"]) / window_s,
            "projector_applied_per_s": (server["applied_after"] - server["applied_before"]) / window_s,
            "server_process_cpu": (server["cpu_after"] - server["cpu_before"]) / window_s,
            "engine_process_cpu": ((server["engine_cpu_after"] - server["engine_cpu_before"]) / window_s
                                   if server["engine_cpu_before"] is not None else None),
            "projector_lag_p50": percentile(lag, 50), "projector_lag_max": max(lag) if lag else math.nan,
            "window_seconds": window_s,
            "server_loop_lag": _stats(server["loop_lag_ms"]),
            "clients_process_cpu": outcome["cpu"],
            "clients_loop_lag": _stats(samples["loop_lag"]["ms"]),
            "machine_busy_cpus": (busy1 - busy0) / max(1, total1 - total0) * cpus,
            "machine_steal_cpus": (steal1 - steal0) / max(1, total1 - total0) * cpus,
        },
        "probe_events": outcome["probe_events"],
        "probe_publish_ack": _stats(samples["publish_ack"]["ms"]),
        "messages_received": outcome["messages"],
        "missing": outcome["missing"],
        "projector_cancel_repeats": outcome["projector_cancel_repeats"],
        "errors": outcome["errors"],
        "streams": streams,
        "target_p99_ms": TARGET_P99_MS,
        "ratios": ratios,
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    load = result["load"]
    where = "in the server's process" if result["clients_in_process"] else "in a process of their own"
    engine_where = "in a process of its own" if result["engine_apart"] else "in the web server's process"
    if load["engine_process_cpu"] is not None:
        engine_where += f" at {load['engine_process_cpu'] * 100:.0f}% of a cpu"
    print(f"{result['runs']} runs of `wait {result['step_seconds']:g}s` steps going (engine {engine_where}; "
          f"{load['events_per_s']:.0f} events/s "
          f"appended in the window, web server's process at {load['server_process_cpu'] * 100:.0f}% of a cpu, "
          f"projector lag "
          f"p50 {load['projector_lag_p50']} max {load['projector_lag_max']} events); {result['clients']} clients "
          f"{where}, 3 streams each; {result['probe_events']} probe events in a {result['seconds']:g} s window "
          f"(publish ack p50 {result['probe_publish_ack']['p50_ms']:.2f} ms); missing {result['missing']}")
    print(f"machine busy {load['machine_busy_cpus']:.2f} of {result['machine']['cpu_count']} cpus in the window "
          f"(steal {load['machine_steal_cpus']:.2f}); "
          f"clients' process at {load['clients_process_cpu'] * 100:.0f}% of a cpu; "
          f"event loop lag p99: server {load['server_loop_lag']['p99_ms']:.1f} ms "
          f"(max {load['server_loop_lag']['max_ms']:.1f}), clients {load['clients_loop_lag']['p99_ms']:.1f} ms "
          f"(max {load['clients_loop_lag']['max_ms']:.1f})")
    if result["errors"]:
        print(f"client errors: {result['errors'][:5]}")
    print()
    labels = {"run_list": "/api/runs/stream (projector fan-out)", "one_run": "/api/runs/{id}/stream (probe run)",
              "raw_nats": "raw ordered consumer  [floor]", "engine_run": "/api/runs/{id}/stream (engine run)"}
    rows = []
    for name, s in result["streams"].items():
        for origin, st in s.items():
            rows.append((labels[name], origin.replace("_", " "), st["count"], st["p50_ms"], st["p99_ms"], st["max_ms"]))
    print_table(["stream", "latency", "samples", "p50 ms", "p99 ms", "max ms"], rows)
    print()
    streams, r = result["streams"], result["ratios"]
    print(f"ratios: run list p99 {streams['run_list']['from_ack']['p99_ms']:.1f} ms = "
          f"{r['run_list_p99_vs_target']:.2f}x target (< {result['target_p99_ms']:g} ms), "
          f"{r['run_list_p99_vs_raw_nats']:.1f}x raw NATS p99; "
          f"one run p99 {streams['one_run']['from_ack']['p99_ms']:.1f} ms = "
          f"{r['one_run_p99_vs_target']:.2f}x target, {r['one_run_p99_vs_raw_nats']:.1f}x raw NATS p99")


async def run(args: argparse.Namespace) -> int:
    if (args.runs < args.clients or args.clients < 1 or args.seconds <= 0 or args.probe_rate <= 0
            or args.step_seconds <= 0):
        raise SystemExit("need --clients >= 1, --runs >= --clients, "
                         "and positive --seconds, --probe-rate, --step-seconds")
    with nats_server() as url:
        result = await measure(url, args)
    return finish(NAME, result, args.json, report) if not result["errors"] and not result["missing"] else 1
