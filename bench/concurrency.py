"""concurrency: many runs started at once, against the floor of their appends pipelined by hand.

N runs of S `noop` steps are started together; the engine's services run in a process of
their own so their RSS is theirs alone. The floor publishes the same number of events,
the same size, with raw `js.publish` and the store's OCC headers: one chained sequence
per run-shaped subject family, all N families in flight at once, which is the most
pipelining the runs' own appends allow.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from typing import Any

import nats
from nats.aio.client import Client as NATS

from bench.harness import (
    RssSampler, RunEnds, ServicesProcess, admin_token, finish, machine, median, mib, nats_server, print_machine,
    print_table, proc_status_bytes,
)
from bench.waiting import nats_server_pid
from events import subjects
from events.codec import encode
from events.commands import StartRun
from app.root import ALL_SERVICES
from ui.client import EngineClient

NAME = "concurrency"
HELP = "N runs of S noop steps started at once: completion, steps/s, events/s against pipelined publish, RSS"
TARGET_RSS_BYTES = 300 * 10**6   # the services' peak RSS
WARMUP_RUNS = 20
START_WINDOW = 1000              # StartRun requests in flight at once


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=1000, help="runs started at once (default 1000)")
    parser.add_argument("--steps", type=int, default=10, help="noop steps per run (default 10)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def playbook(steps: int, hold: float = 0.0) -> str:
    """`steps` noop steps; with `hold`, a `wait` step of that many seconds first."""
    lines = ["name: bench-concurrency", "steps:"]
    if hold:
        lines += ["  - id: hold", "    action: wait", "    args:", f"      seconds: {hold}"]
    for i in range(steps):
        lines += [f"  - id: s{i:03d}", "    action: noop"]
    return "\n".join(lines) + "\n"


async def start_runs(client: EngineClient, text: str, run_ids: list[str]) -> dict[str, float]:
    """Start the runs, START_WINDOW requests in flight; when each StartRun was accepted (perf_counter)."""
    accepted: dict[str, float] = {}

    async def one(run_id: str) -> None:
        reply = await client.send(StartRun(playbook=text, run_id=run_id), timeout=300)
        if not reply.accepted:
            raise RuntimeError(f"StartRun rejected: {reply.error.message if reply.error else reply}")
        accepted[run_id] = time.perf_counter()

    for first in range(0, len(run_ids), START_WINDOW):
        await asyncio.gather(*(one(r) for r in run_ids[first:first + START_WINDOW]))
    return accepted


def peak_active(spans: list[tuple[float, float]]) -> int:
    """The most runs between their start and their end at any one moment."""
    moments = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    active = peak = 0
    for _, change in moments:
        active += change
        peak = max(peak, active)
    return peak


async def last_seq(nc: NATS) -> int:
    info = await nc.jetstream().stream_info(subjects.RUNS_STREAM)
    return info.state.last_seq


async def pipelined_floor(nc: NATS, families: int, events: int, payload: bytes) -> float:
    """Seconds to publish `events` raw events over `families` OCC-chained subject families at once."""
    js = nc.jetstream(timeout=30.0)
    tag = os.urandom(4).hex()
    base, extra = divmod(events, families)

    async def chain(index: int, count: int) -> None:
        family = f"pb.run.benchfloor{tag}x{index}"
        subject, aggregate, expected = f"{family}.FloorAppended", f"{family}.>", 0
        for _ in range(count):
            headers = {"Nats-Msg-Id": os.urandom(12).hex(), "Nats-Expected-Last-Subject-Sequence": str(expected),
                       "Nats-Expected-Last-Subject-Sequence-Subject": aggregate}
            expected = (await js.publish(subject, payload, headers=headers)).seq

    began = time.perf_counter()
    await asyncio.gather(*(chain(i, base + (1 if i < extra else 0)) for i in range(families)))
    return time.perf_counter() - began


async def phase(client: EngineClient, ends: RunEnds, text: str, ids: list[str], pid: int,
                timeout: float) -> dict[str, Any]:
    """Start every run at once, await every end, sampling the services' RSS throughout."""
    nc = client.nc
    rss_before = proc_status_bytes(pid, "VmRSS")
    seq_before = await last_seq(nc)
    async with RssSampler([pid]) as sampler:
        began = time.perf_counter()
        accepted = await start_runs(client, text, ids)
        started_s = time.perf_counter() - began
        await ends.wait(ids, timeout)
    done = {r: ends.ended[r] for r in ids}
    spans = [(min(accepted[r], done[r][1]), done[r][1]) for r in ids]
    most_active = peak_active(spans)
    wall = max(end for _, end in done.values()) - began
    return {
        "runs": len(ids),
        "completed": sum(1 for kind, _ in done.values() if kind == "RunCompleted"),
        "start_seconds": started_s,
        "wall_seconds": wall,
        "median_run_seconds": median([end - start for start, end in spans]),
        "peak_active_runs": most_active,
        "events": await last_seq(nc) - seq_before,
        "rss_before_bytes": rss_before,
        "rss_peak_bytes": sampler.peak,
        "rss_samples": sampler.samples,
        "bytes_per_active_run": (sampler.peak - rss_before) / most_active,
    }


async def measure(url: str, runs: int, steps: int) -> dict[str, Any]:
    text = playbook(steps)
    server_pid = nats_server_pid(url)
    timeout = 120 + runs * steps * 0.05
    with tempfile.TemporaryDirectory(prefix="pb-bench-concurrency-") as home:
        services = ServicesProcess(url, sorted(ALL_SERVICES), home)
        try:
            await services.ready()
            nc = await nats.connect(url, name="bench-client")
            try:
                client = EngineClient(nc, admin_token(home))
                ends = await RunEnds(nc).start()
                tag = uuid.uuid4().hex[:8]

                # Warm-up: consumers, caches, code paths; and one typical event's size.
                warm = [f"warm{tag}-{i:04d}" for i in range(WARMUP_RUNS)]
                await start_runs(client, text, warm)
                await ends.wait(warm, 120)
                sizes = sorted(len(encode(e)) for _, e in await client.events(warm[0]))
                payload = b"x" * sizes[len(sizes) // 2]
                await pipelined_floor(nc, min(runs, 100), min(runs, 100) * 3, payload)
                await asyncio.sleep(1.0)   # let the services' RSS settle after the warm-up
                server_before = proc_status_bytes(server_pid, "VmRSS") if server_pid else None

                flowing = await phase(client, ends, text, [f"conc{tag}-{i:05d}" for i in range(runs)],
                                      services.pid, timeout)
                events = flowing["events"]
                floors = [await pipelined_floor(nc, runs, events, payload)]
                await asyncio.sleep(0.5)
                floors.append(await pipelined_floor(nc, runs, events, payload))

                # Held: a first `wait` step outlasts the starting of every run, so all are active at once.
                hold = round(1.0 + flowing["start_seconds"], 1)
                await asyncio.sleep(1.0)
                held_ids = [f"held{tag}-{i:05d}" for i in range(runs)]
                held = await phase(client, ends, playbook(steps, hold=hold), held_ids, services.pid, timeout + hold)
                held["hold_seconds"] = hold
                # Once the holds end, every run's steps are ready at once (the wait step counted too).
                held["steps_per_second_all_active"] = runs * (steps + 1) / (held["wall_seconds"] - hold)
                peak_hwm = proc_status_bytes(services.pid, "VmHWM")
                server_after = proc_status_bytes(server_pid, "VmRSS") if server_pid else None
                await ends.stop()
            finally:
                await nc.close()
        finally:
            services.stop()

    floor_s = median(floors)
    wall = flowing["wall_seconds"]
    events_per_s = events / wall
    floor_events_per_s = events / floor_s
    return {
        "benchmark": NAME,
        "runs": runs,
        "steps": steps,
        "warmup_runs": WARMUP_RUNS,
        "machine": machine(),
        "services": sorted(ALL_SERVICES),
        "flowing": flowing,
        "held": held,
        "steps_per_second": runs * steps / wall,
        "events_per_step": events / (runs * steps),
        "events_per_second": events_per_s,
        "floor": {
            "what": "raw js.publish, OCC-chained per run-shaped family, all families in flight",
            "families": runs,
            "events": events,
            "payload_bytes": len(payload),
            "seconds": floors,
            "events_per_second": floor_events_per_s,
        },
        "services_peak_rss_bytes": peak_hwm,
        "nats_server_rss_bytes": {"before": server_before, "after": server_after},
        "target_rss_bytes": TARGET_RSS_BYTES,
        "ratios": {
            "events_per_second_vs_floor": events_per_s / floor_events_per_s,
            "wall_vs_floor": wall / floor_s,
            "peak_rss_vs_target": peak_hwm / TARGET_RSS_BYTES,
        },
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    flowing, held, floor, ratios = result["flowing"], result["held"], result["floor"], result["ratios"]
    print(f"{result['runs']} runs x {result['steps']} noop steps started at once (+{result['warmup_runs']} warm-up); "
          f"services ({'+'.join(result['services'])}) in their own process")
    print()
    print_table(
        ["measure", "engine", "floor (pipelined publish)", "ratio"],
        [("wall s", flowing["wall_seconds"], median(floor["seconds"]), f"{ratios['wall_vs_floor']:.2f}x"),
         ("events/s", result["events_per_second"], floor["events_per_second"],
          f"{ratios['events_per_second_vs_floor']:.2f}x"),
         ("steps/s", result["steps_per_second"], "", ""),
         ("StartRun accepted/s", flowing["runs"] / flowing["start_seconds"], "", ""),
         (f"steps/s, {held['peak_active_runs']} runs active (held)", held["steps_per_second_all_active"], "", ""),
         ("events/step", result["events_per_step"], "", "")],
    )
    print()
    rows = []
    for label, p in ((f"as they come ({result['steps']} noop)", flowing),
                     (f"held ({held['hold_seconds']:g} s wait + {result['steps']} noop)", held)):
        rows.append((label, f"{p['completed']}/{p['runs']}", p["start_seconds"], p["wall_seconds"],
                     p["median_run_seconds"], p["peak_active_runs"], mib(p["rss_before_bytes"]),
                     mib(p["rss_peak_bytes"]), f"{p['bytes_per_active_run'] / 1024:.1f} KiB"))
    print_table(["runs", "completed", "all started s", "all ended s", "run s (median)", "peak active",
                 "RSS before", "RSS peak", "per active run"], rows)
    server = result["nats_server_rss_bytes"]
    print(f"services' VmHWM (peak RSS over the whole benchmark): {mib(result['services_peak_rss_bytes'])}; "
          f"nats-server RSS (info): {mib(server['before'])} before, {mib(server['after'])} after")
    print()
    print(f"ratios: events/s {ratios['events_per_second_vs_floor']:.2f}x the pipelined-publish floor "
          f"(completion {ratios['wall_vs_floor']:.1f}x its time); services' peak RSS "
          f"{result['services_peak_rss_bytes'] / 1e6:.0f} MB with {held['peak_active_runs']} runs active "
          f"(target <= {result['target_rss_bytes'] / 1e6:.0f} MB)")


async def run(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.steps < 1:
        raise SystemExit("--runs and --steps must be at least 1")
    with nats_server() as url:
        result = await measure(url, args.runs, args.steps)
    return finish(NAME, result, args.json, report)
