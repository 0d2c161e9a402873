"""steps: what one sequential step costs in a warm engine, against the floor it cannot beat.

A run of N `noop` steps costs at least its appends (each an OCC-chained JetStream
publish-with-ack); a run of N `shell` steps costs that plus one process per step. Both
floors are measured in the same process, against the same server, between the runs.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import nats
from nats.aio.client import Client as NATS

from bench.harness import engine, finish, machine, median, nats_server, percentile, print_machine, print_table
from events import subjects
from events.codec import encode
from events.commands import StartRun
from events.run import TERMINAL_EVENTS
from ui.client import EngineClient

NAME = "steps"
HELP = "per-step cost of sequential noop and shell runs, against a raw append / subprocess floor"
TARGETS = {"noop": 1.5, "shell": 2.0}   # per-step cost / floor we aim to stay under
RUN_TIMEOUT_PER_STEP = 1.0              # seconds; generous, only to fail instead of hanging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=100, help="steps per run (default 100)")
    parser.add_argument("--repetitions", type=int, default=3, help="measured runs per workload; the median counts")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def playbook(kind: str, steps: int) -> str:
    """YAML of `steps` sequential steps of one kind."""
    lines = [f"name: bench-{kind}", "steps:"]
    for i in range(steps):
        lines.append(f"  - id: s{i:05d}")
        if kind == "noop":
            lines.append("    action: noop")
        else:
            lines += ["    action: shell", "    args:", '      command: "true"', "    timeout_seconds: 10"]
    return "\n".join(lines) + "\n"


async def measure_run(client: EngineClient, kind: str, text: str, steps: int) -> tuple[float, int, int]:
    """Wall seconds from StartRun to the run's end, events, median event bytes.

    The end is awaited on a core subscription to the run's terminal subjects only, so
    the measurement adds one message to the run's cost, not one per event.
    """
    run_id = f"bench-{kind}-{uuid.uuid4().hex[:12]}"
    nc = client.nc
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_end(msg) -> None:
        if not ended.done():
            ended.set_result(msg.subject.rsplit(".", 1)[1])

    subs = [await nc.subscribe(subjects.run_event(run_id, t.__name__), cb=on_end) for t in TERMINAL_EVENTS]
    try:
        began = time.perf_counter()
        async with asyncio.timeout(30 + steps * RUN_TIMEOUT_PER_STEP):
            reply = await client.send(StartRun(playbook=text, run_id=run_id), timeout=60)
            if not reply.accepted:
                raise RuntimeError(f"StartRun rejected: {reply.error.message if reply.error else reply}")
            last = await ended
        wall = time.perf_counter() - began
    finally:
        for sub in subs:
            await sub.unsubscribe()
    if last != "RunCompleted":
        raise RuntimeError(f"run {run_id} ended with {last}, not RunCompleted")
    events = await client.events(run_id)
    return wall, len(events), int(median([len(encode(e)) for _, e in events]))


async def append_floor(nc: NATS, count: int, payload: bytes) -> list[float]:
    """Seconds per raw OCC-chained publish-with-ack, headers as the store sends them.

    A fresh run-shaped subject family in PB_RUNS, on a type no service consumes, so
    the server does the same wildcard last-sequence check it does for a real run.
    """
    js = nc.jetstream(timeout=5.0)
    family = f"pb.run.benchfloor{os.urandom(6).hex()}"
    subject, aggregate = f"{family}.FloorAppended", f"{family}.>"
    expected, samples = 0, []
    for _ in range(count):
        headers = {
            "Nats-Msg-Id": os.urandom(12).hex(),
            "Nats-Expected-Last-Subject-Sequence": str(expected),
            "Nats-Expected-Last-Subject-Sequence-Subject": aggregate,
        }
        began = time.perf_counter()
        ack = await js.publish(subject, payload, headers=headers)
        samples.append(time.perf_counter() - began)
        expected = ack.seq
    return samples


async def subprocess_floor(count: int) -> list[float]:
    """Seconds per bare `true` process: spawn and reap, nothing else."""
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        process = await asyncio.create_subprocess_exec("true")
        await process.wait()
        samples.append(time.perf_counter() - began)
    return samples


async def measure(url: str, steps: int, repetitions: int) -> dict[str, Any]:
    texts = {kind: playbook(kind, steps) for kind in ("noop", "shell")}
    client_nc = await nats.connect(url, name="bench-client")
    try:
        async with engine(url) as running:
            services_nc = running.nc
            client = EngineClient(client_nc, running.credential)
            # Warm-up: caches, consumers, code paths, the server's subject tree.
            _, _, size = await measure_run(client, "noop", texts["noop"], steps)
            await measure_run(client, "shell", texts["shell"], steps)
            payload = b"x" * size   # a typical step event's size
            await append_floor(services_nc, 3 * steps, payload)
            await subprocess_floor(steps)

            walls: dict[str, list[float]] = {"noop": [], "shell": []}
            counts: dict[str, int] = {}
            appends: list[list[float]] = []
            spawns: list[list[float]] = []
            for _ in range(repetitions):   # interleaved, so drift hits floors and workloads alike
                appends.append(await append_floor(services_nc, 3 * steps, payload))
                wall, counts["noop"], _ = await measure_run(client, "noop", texts["noop"], steps)
                walls["noop"].append(wall)
                spawns.append(await subprocess_floor(steps))
                wall, counts["shell"], _ = await measure_run(client, "shell", texts["shell"], steps)
                walls["shell"].append(wall)
    finally:
        await client_nc.close()

    append_ms = median([sum(a) / len(a) for a in appends]) * 1000
    spawn_ms = median([sum(s) / len(s) for s in spawns]) * 1000
    all_appends = [x for a in appends for x in a]
    all_spawns = [x for s in spawns for x in s]
    workloads = {}
    for kind, extra in (("noop", 0.0), ("shell", spawn_ms)):
        per_step = median(walls[kind]) / steps * 1000
        events_per_step = counts[kind] / steps
        floor = events_per_step * append_ms + extra
        workloads[kind] = {
            "per_step_ms": per_step,
            "floor_ms": floor,
            "ratio": per_step / floor,
            "events_per_step": events_per_step,
            "events": counts[kind],
            "wall_s": walls[kind],
            "target_ratio": TARGETS[kind],
        }
    return {
        "benchmark": NAME,
        "steps": steps,
        "repetitions": repetitions,
        "machine": machine(),
        "floors": {
            "append_ms": append_ms,
            "append_p50_ms": percentile(all_appends, 50) * 1000,
            "append_p99_ms": percentile(all_appends, 99) * 1000,
            "append_payload_bytes": len(payload),
            "subprocess_ms": spawn_ms,
            "subprocess_p50_ms": percentile(all_spawns, 50) * 1000,
            "subprocess_p99_ms": percentile(all_spawns, 99) * 1000,
        },
        "workloads": workloads,
        "ratios": {kind: w["ratio"] for kind, w in workloads.items()},
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    floors = result["floors"]
    print(f"steps per run: {result['steps']}, repetitions: {result['repetitions']} (median), "
          f"raw append {floors['append_ms']:.3f} ms (p99 {floors['append_p99_ms']:.3f}), "
          f"raw subprocess {floors['subprocess_ms']:.3f} ms (p99 {floors['subprocess_p99_ms']:.3f})")
    print()
    rows = [(kind, w["per_step_ms"], w["floor_ms"], f"{w['ratio']:.2f}x", f"{w['events_per_step']:.2f}")
            for kind, w in result["workloads"].items()]
    print_table(["workload", "per-step ms", "floor ms", "ratio", "events/step"], rows)
    print()
    print("ratios: " + ", ".join(f"{kind} {w['ratio']:.1f}x floor (target <= {w['target_ratio']:g}x)"
                                 for kind, w in result["workloads"].items()))


async def run(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.repetitions < 1:
        raise SystemExit("--steps and --repetitions must be at least 1")
    with nats_server() as url:
        result = await measure(url, args.steps, args.repetitions)
    return finish(NAME, result, args.json, report)
