"""parallel: one run whose parallel group of N `wait` steps should take as long as one of them.

The floor is N `asyncio.sleep`s gathered in the same event loop, between the runs: what
the wall time would be if scheduling, starting and recording the N steps cost nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import nats

from bench.harness import (
    RunEnds, engine, finish, machine, median, nats_server, print_machine, print_table, wait_playbook,
)
from events.commands import StartRun
from events.run import StepStarted, StepSucceeded
from ui.client import EngineClient

NAME = "parallel"
HELP = "one run with a parallel group of N wait steps: wall time against one step's wait"
TARGET = 1.5   # wall time / one step's wait


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=100, help="wait steps in the parallel group (default 100)")
    parser.add_argument("--seconds", type=float, default=1.0, help="each step's wait (default 1)")
    parser.add_argument("--repetitions", type=int, default=3, help="measured runs; the median counts")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def playbook(steps: int, seconds: float) -> str:
    return wait_playbook("bench-parallel", steps, seconds, parallel_group="waits")


async def measure_run(client: EngineClient, ends: RunEnds, text: str, timeout: float) -> tuple[float, dict[str, float]]:
    """Wall seconds from StartRun to the run's end, and how the steps' starts and ends spread."""
    run_id = f"bench-par-{uuid.uuid4().hex[:12]}"
    began = time.perf_counter()
    reply = await client.send(StartRun(playbook=text, run_id=run_id), timeout=60)
    if not reply.accepted:
        raise RuntimeError(f"StartRun rejected: {reply.error.message if reply.error else reply}")
    await ends.wait([run_id], timeout)
    kind, ended = ends.ended[run_id]
    if kind != "RunCompleted":
        raise RuntimeError(f"run {run_id} ended with {kind}, not RunCompleted")
    events = [e for _, e in await client.events(run_id)]
    first = events[0].at
    starts = [(e.at - first).total_seconds() for e in events if isinstance(e, StepStarted)]
    successes = [(e.at - first).total_seconds() for e in events if isinstance(e, StepSucceeded)]
    return ended - began, {"first_step_started_s": min(starts), "last_step_started_s": max(starts),
                           "first_step_succeeded_s": min(successes), "last_step_succeeded_s": max(successes),
                           "events": len(events)}


async def sleep_floor(steps: int, seconds: float) -> float:
    """N sleeps of `seconds` gathered: the wall time of the group if its overhead were nil."""
    began = time.perf_counter()
    await asyncio.gather(*(asyncio.sleep(seconds) for _ in range(steps)))
    return time.perf_counter() - began


async def measure(url: str, steps: int, seconds: float, repetitions: int) -> dict[str, Any]:
    text = playbook(steps, seconds)
    timeout = 60 + seconds * 3 + steps * 0.1
    client_nc = await nats.connect(url, name="bench-client")
    try:
        async with engine(url) as running:
            client = EngineClient(client_nc, running.credential)
            ends = await RunEnds(client_nc).start()
            await measure_run(client, ends, playbook(steps, 0), timeout)   # warm-up: the same group, no wait
            walls, floors, spreads = [], [], []
            for _ in range(repetitions):
                floors.append(await sleep_floor(steps, seconds))
                wall, spread = await measure_run(client, ends, text, timeout)
                walls.append(wall)
                spreads.append(spread)
            await ends.stop()
    finally:
        await client_nc.close()
    wall, floor = median(walls), median(floors)
    spread = spreads[walls.index(sorted(walls)[(len(walls) - 1) // 2])]
    return {
        "benchmark": NAME,
        "steps": steps,
        "seconds": seconds,
        "repetitions": repetitions,
        "machine": machine(),
        "wall_s": walls,
        "floor_s": floors,
        "median_wall_s": wall,
        "median_floor_s": floor,
        "overhead_s": wall - floor,
        "overhead_per_step_ms": (wall - floor) / steps * 1000,
        "spread_of_median_run": spread,
        "target_ratio": TARGET,
        "ratios": {"wall_vs_one_wait": wall / floor},
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    spread = result["spread_of_median_run"]
    print(f"one run, a parallel group of {result['steps']} `wait` steps of {result['seconds']:g} s; "
          f"{result['repetitions']} repetitions (median); steps started {spread['first_step_started_s']:.3f} - "
          f"{spread['last_step_started_s']:.3f} s and succeeded {spread['first_step_succeeded_s']:.3f} - "
          f"{spread['last_step_succeeded_s']:.3f} s after RunStarted ({spread['events']} events)")
    print()
    print_table(["workload", "wall s", "floor s", "overhead s", "overhead/step ms", "ratio"],
                [(f"{result['steps']} x wait {result['seconds']:g} s", result["median_wall_s"],
                  result["median_floor_s"], result["overhead_s"], result["overhead_per_step_ms"],
                  f"{result['ratios']['wall_vs_one_wait']:.2f}x")])
    print()
    print(f"ratios: wall {result['ratios']['wall_vs_one_wait']:.2f}x one step's wait "
          f"(target < {result['target_ratio']:g}x)")


async def run(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.repetitions < 1 or args.seconds <= 0:
        raise SystemExit("--steps and --repetitions must be at least 1, --seconds above 0")
    with nats_server() as url:
        result = await measure(url, args.steps, args.seconds, args.repetitions)
    return finish(NAME, result, args.json, report)
