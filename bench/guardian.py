"""guardian: what it costs a step process to die with its executor, against the same process without it.

Each round starts N `/bin/sh -c true` through the shell action, as a step starts them, three
ways, interleaved: (a) as the engine does (its group handed to the guardian, the attempt's
identity in its environment, the group ended when the command exits); (b) the same with a
guardian that holds nothing, so (a) - (b) is the guardian's share; (c) the floor: a bare
`asyncio.create_subprocess_exec("/bin/sh", "-c", "true")` and its wait. No NATS: this is the
process side of a step only (a step's lease is measured by `steps`).
"""
from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.harness import finish, machine, median, print_machine, print_table
from services.executor import processes
from services.executor.actions import run_action

NAME = "guardian"
HELP = "per-step cost of dying with the executor (guardian, group ended at exit) against the same step without it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", type=int, default=200, help="processes per round and way (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median counts (default 5)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


class _Unguarded:
    """A guardian that holds nothing: the step's process as it was before it died with its executor."""

    def hold(self, group: int, attempt: str | None) -> None:
        pass

    def forget(self, group: int) -> None:
        pass


async def _shell(count: int) -> float:
    began = time.perf_counter()
    for _ in range(count):
        result = await run_action("shell", {"command": "true"}, timeout=30)
        if not result.ok:
            raise RuntimeError(f"`true` failed: {result.error}")
    return (time.perf_counter() - began) / count


async def _floor(count: int) -> float:
    began = time.perf_counter()
    for _ in range(count):
        process = await asyncio.create_subprocess_exec("/bin/sh", "-c", "true")
        await process.wait()
    return (time.perf_counter() - began) / count


async def measure(count: int, rounds: int) -> dict[str, Any]:
    guarded = processes.GUARDIAN
    await _shell(20), await _floor(20)            # warm-up: the guardian starts, caches fill
    samples: dict[str, list[float]] = {"guarded": [], "unguarded": [], "floor": []}
    try:
        for _ in range(rounds):
            processes.GUARDIAN = guarded
            samples["guarded"].append(await _shell(count))
            processes.GUARDIAN = _Unguarded()     # type: ignore[assignment]
            samples["unguarded"].append(await _shell(count))
            samples["floor"].append(await _floor(count))
    finally:
        processes.GUARDIAN = guarded
    ms = {way: median(values) * 1000 for way, values in samples.items()}
    rules = processes.ProcessRules.from_environ()
    return {
        "benchmark": NAME,
        "processes": count,
        "step_user": rules.user.name if rules.user else "the engine's own",
        "rounds": rounds,
        "machine": machine(),
        "per_process_ms": ms,
        "samples_ms": {way: [v * 1000 for v in values] for way, values in samples.items()},
        # Paired by round (same moment, same load): the median difference is the guardian's share.
        "guardian_ms": median([g - u for g, u in zip(samples["guarded"], samples["unguarded"])]) * 1000,
        "ratios": {"guarded_vs_unguarded": ms["guarded"] / ms["unguarded"],
                   "guarded_vs_floor": ms["guarded"] / ms["floor"]},
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    print(f"{result['processes']} `/bin/sh -c true` per way and round, {result['rounds']} rounds interleaved "
          f"(median counts); steps run as {result['step_user']}")
    print()
    ms = result["per_process_ms"]
    print_table(["way", "ms per process"], [
        ("as the engine runs a step (guardian, group ended at exit)", ms["guarded"]),
        ("the same, the guardian holding nothing", ms["unguarded"]),
        ("floor: bare create_subprocess_exec + wait", ms["floor"]),
    ])
    print()
    ratios = result["ratios"]
    print(f"ratios: the guardian costs {result['guardian_ms'] * 1000:.0f} us per step process (median of the "
          "rounds' differences) "
          f"({ratios['guarded_vs_unguarded']:.3f}x the step without it); a step process costs "
          f"{ratios['guarded_vs_floor']:.2f}x a bare one")


async def run(args: argparse.Namespace) -> int:
    if args.processes < 1 or args.rounds < 1:
        raise SystemExit("--processes and --rounds must be at least 1")
    result = await measure(args.processes, args.rounds)
    return finish(NAME, result, args.json, report)
