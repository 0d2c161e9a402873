"""recovery: two executor processes share N runs in flight; one is SIGKILLed; the other finishes them.

What counts: how long after the kill the last run ends, against its floor (the soonest
the slowest run could end: the redelivery of an attempt the victim held, `ack_wait`
after its delivery or last heartbeat, then its steps left back to back); runs lost (must be 0);
attempts started twice (must be 0). An attempt the kill interrupted is recorded as
`StepFailed(category=interrupted)` and re-run as the next attempt: not a duplicate, and
counted on its own.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import nats

from bench.harness import (
    RunEnds, ServicesProcess, admin_token, finish, machine, nats_server, print_machine, print_table, wait_playbook,
)
from events import subjects
from events.codec import decode_event
from events.commands import StartRun
from events.run import TERMINAL_EVENTS, RunEvent, StepFailed, StepStarted, StepSucceeded
from ui.client import EngineClient

NAME = "recovery"
HELP = "SIGKILL one of two executors with N runs in flight: time to finish on the other, lost runs, duplicates"
ENGINE = ("approval", "resilience", "run")   # everything but the executors, in one process
KILL_AT = 1 / 3                               # of all steps succeeded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=100, help="runs in flight (default 100)")
    parser.add_argument("--steps", type=int, default=6, help="wait steps per run (default 6)")
    parser.add_argument("--step-seconds", type=float, default=0.5, help="each step's wait (default 0.5)")
    parser.add_argument("--ack-wait", type=float, default=2.0,
                        help="PLAYBOOK_ACK_WAIT of the engine's processes: seconds until unacked work is redelivered")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def playbook(steps: int, seconds: float) -> str:
    return wait_playbook("bench-recovery", steps, seconds, timeout_seconds="60")


class Progress:
    """Which executor holds which attempt, and how many steps each run has finished, live."""

    def __init__(self, total_steps: int) -> None:
        self.holder: dict[tuple[str, str], tuple[str, float]] = {}   # (run, step) -> (executor, started), while running
        self.succeeded: collections.Counter[str] = collections.Counter()
        self.total_steps = total_steps
        self.reached = asyncio.Event()

    async def on_started(self, msg: Any) -> None:
        event = decode_event(msg.data)
        self.holder[(event.run_id, event.step_id)] = (event.executor, time.perf_counter())

    async def on_succeeded(self, msg: Any) -> None:
        event = decode_event(msg.data)
        self.holder.pop((event.run_id, event.step_id), None)
        self.succeeded[event.run_id] += 1
        if sum(self.succeeded.values()) >= self.total_steps * KILL_AT:
            self.reached.set()


def soonest_end(history: list[tuple[int, RunEvent]], kill: datetime, victim: str, steps: int, step_seconds: float,
                ack_wait: float) -> tuple[float, bool]:
    """Seconds after the kill the run could end at the soonest, from its events; and whether the victim held it.

    Its steps not succeeded by the kill, back to back; an attempt the victim held first
    waits for redelivery (`ack_wait` after its delivery or last heartbeat, which came
    every ack_wait/3); an attempt the survivor held is part done.
    """
    events = [e for _, e in history]
    if any(isinstance(e, TERMINAL_EVENTS) and e.at <= kill for e in events):
        return 0.0, False
    succeeded = {e.step_id for e in events if isinstance(e, StepSucceeded) and e.at <= kill}
    ended = {(e.step_id, e.attempt) for e in events if isinstance(e, (StepSucceeded, StepFailed)) and e.at <= kill}
    running = [e for e in events if isinstance(e, StepStarted) and e.at <= kill and (e.step_id, e.attempt) not in ended]
    left = (steps - len(succeeded)) * step_seconds
    if not running:
        return left, False
    age = (kill - running[-1].at).total_seconds()
    if running[-1].executor == victim:
        return left + ack_wait - min(age, ack_wait / 3), True
    return left - min(age, step_seconds), False


async def measure(url: str, runs: int, steps: int, step_seconds: float, ack_wait: float) -> dict[str, Any]:
    text = playbook(steps, step_seconds)
    env = {"PLAYBOOK_ACK_WAIT": f"{ack_wait:g}"}
    with tempfile.TemporaryDirectory(prefix="pb-bench-recovery-") as home:
        processes = [ServicesProcess(url, ENGINE, home, **env)]
        executors = [ServicesProcess(url, ["executor"], home, **env) for _ in range(2)]
        processes += executors
        try:
            await asyncio.gather(*(p.ready() for p in processes))
            nc = await nats.connect(url, name="bench-client")
            try:
                client = EngineClient(nc, admin_token(home))
                ends = await RunEnds(nc).start()
                progress = Progress(runs * steps)
                subs = [await nc.subscribe(subjects.events_of_type("StepStarted"), cb=progress.on_started),
                        await nc.subscribe(subjects.events_of_type("StepSucceeded"), cb=progress.on_succeeded)]
                await nc.flush()
                tag = uuid.uuid4().hex[:8]
                ids = [f"rec{tag}-{i:04d}" for i in range(runs)]

                began = time.perf_counter()
                replies = await asyncio.gather(*(client.send(StartRun(playbook=text, run_id=r),
                                                             timeout=120) for r in ids))
                if rejected := [r for r in replies if not r.accepted]:
                    raise RuntimeError(f"{len(rejected)} StartRun rejected: {rejected[0].error}")
                await asyncio.wait_for(progress.reached.wait(), 60 + steps * step_seconds * 2)

                # The victim: the executor holding the most attempts right now.
                held = collections.Counter(name for name, _ in progress.holder.values())
                names = {p.pid: next((n for n in held if n.endswith(f"-{p.pid}")), f"?-{p.pid}") for p in executors}
                victim = max(executors, key=lambda p: held.get(names[p.pid], 0))
                victim_name = names[victim.pid]
                killed_at, killed_clock = time.perf_counter(), datetime.now(timezone.utc)
                victim.kill()
                unfinished = [r for r in ids if r not in ends.ended]

                timeout = 60 + ack_wait * 5 + steps * step_seconds * 3
                try:
                    await ends.wait(ids, timeout)
                except TimeoutError:
                    pass   # counted as lost below
                ended = [ends.ended[r][1] for r in ids if r in ends.ended]
                last_end = max(ended) if ended else time.perf_counter()
                histories = await asyncio.gather(*(client.events(r) for r in ids))
                for sub in subs:
                    await sub.unsubscribe()
                await ends.stop()
            finally:
                await nc.close()
        finally:
            for p in processes:
                if p.process.poll() is None:
                    p.stop()

    duplicates, interrupted, attempts = 0, 0, 0
    floors = [soonest_end(history, killed_clock, victim_name, steps, step_seconds, ack_wait) for history in histories]
    for history in histories:
        starts = collections.Counter((e.step_id, e.attempt) for _, e in history if isinstance(e, StepStarted))
        attempts += sum(starts.values())
        duplicates += sum(n - 1 for n in starts.values() if n > 1)
        interrupted += sum(1 for _, e in history if isinstance(e, StepFailed) and e.category == "interrupted")
    completed = sum(1 for r in ids if ends.ended.get(r, ("",))[0] == "RunCompleted")
    recovery_s = last_end - killed_at
    floor_s = max((f for f, _ in floors), default=0.0)
    return {
        "benchmark": NAME,
        "runs": runs,
        "steps": steps,
        "step_seconds": step_seconds,
        "ack_wait_seconds": ack_wait,
        "machine": machine(),
        "processes": {"engine": list(ENGINE), "executors": 2},
        "killed_after_seconds": killed_at - began,
        "killed_executor_held_attempts": sum(1 for _, held_by_victim in floors if held_by_victim),
        "held_attempts_by_executor": dict(held),
        "runs_unfinished_at_kill": len(unfinished),
        "recovery_seconds": recovery_s,
        "floor_seconds": floor_s,
        "runs_completed": completed,
        "runs_lost": runs - completed,
        "attempts_started": attempts,
        "attempts_started_twice": duplicates,
        "interrupted_attempts": interrupted,
        "total_seconds": last_end - began,
        "ratios": {"recovery_vs_floor": recovery_s / floor_s if floor_s else None, "runs_lost": runs - completed,
                   "attempts_started_twice": duplicates},
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    print(f"{result['runs']} runs x {result['steps']} `wait` steps of {result['step_seconds']:g} s; engine "
          f"({'+'.join(result['processes']['engine'])}) and 2 executors in processes of their own, "
          f"PLAYBOOK_ACK_WAIT={result['ack_wait_seconds']:g} s; SIGKILL of the executor holding the most attempts "
          f"{result['killed_after_seconds']:.2f} s after the first StartRun "
          f"(held: {result['held_attempts_by_executor']}), "
          f"{result['runs_unfinished_at_kill']} runs unfinished then")
    print()
    print_table(["measure", "value"], [
        ("recovery s (kill -> last run ended)", result["recovery_seconds"]),
        ("floor s (redelivery + steps left, slowest run)", result["floor_seconds"]),
        ("runs completed", f"{result['runs_completed']} / {result['runs']}"),
        ("runs lost", result["runs_lost"]),
        ("attempts started", result["attempts_started"]),
        ("attempts started twice", result["attempts_started_twice"]),
        ("attempts interrupted (re-run as the next attempt)", result["interrupted_attempts"]),
        ("attempts the killed executor held", result["killed_executor_held_attempts"]),
    ])
    print()
    ratios = result["ratios"]
    vs_floor = "n/a" if ratios["recovery_vs_floor"] is None else f"{ratios['recovery_vs_floor']:.2f}x"
    print(f"ratios: recovery {vs_floor} its floor (redelivery after ack_wait + the steps left); "
          f"runs lost {ratios['runs_lost']} (target 0), attempts started twice {ratios['attempts_started_twice']} "
          f"(target 0); {result['interrupted_attempts']} interrupted attempts re-run")


async def run(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.steps < 1 or args.step_seconds <= 0 or args.ack_wait <= 0:
        raise SystemExit("--runs and --steps must be at least 1, --step-seconds and --ack-wait above 0")
    with nats_server() as url:
        result = await measure(url, args.runs, args.steps, args.step_seconds, args.ack_wait)
    return finish(NAME, result, args.json, report)
