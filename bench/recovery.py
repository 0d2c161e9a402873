"""recovery: two executor processes share N runs in flight; one is SIGKILLed; the other finishes them.

Every step is a shell command with a side effect: it appends `<run>/<step>/<attempt> start
<uptime>` to a file, waits, and appends `... end <uptime>`. What counts: how long after the
kill the last run ends, against its floor (the soonest the slowest run could end: the
takeover of an attempt the victim held, when its lease lapses, a lease after the victim's
last renewal, then its steps left back to back); runs lost (must be 0); attempts started
twice and side effects written twice (must be 0); side effects the victim's attempts wrote
after the kill (must be 0: their processes die with their executor). An attempt the kill
interrupted is recorded as `StepFailed(category=interrupted)` and re-run as the next
attempt: at least once, counted on its own. The ack wait is left at its default: takeover
is the lease's doing.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nats

from bench.harness import (
    RunEnds, ServicesProcess, admin_token, finish, machine, nats_server, print_machine, print_table,
)
from events import subjects
from events.codec import decode_event
from events.commands import StartRun
from events.run import TERMINAL_EVENTS, RunEvent, StepFailed, StepStarted, StepSucceeded
from ui.client import EngineClient

NAME = "recovery"
HELP = ("SIGKILL one of two executors with N runs in flight: time to finish on the other, lost runs, side effects "
        "twice")
ENGINE = ("approval", "resilience", "run")   # everything but the executors, in one process
KILL_AT = 1 / 3                               # of all steps succeeded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=100, help="runs in flight (default 100)")
    parser.add_argument("--steps", type=int, default=4, help="shell steps per run (default 4)")
    parser.add_argument("--step-seconds", type=float, default=0.5, help="each step's wait (default 0.5)")
    parser.add_argument("--lease", type=float, default=2.0,
                        help="PLAYBOOK_LEASE_SECONDS of the engine's processes: an executor's silence before takeover")
    parser.add_argument("--ack-wait", type=float, default=30.0,
                        help="PLAYBOOK_ACK_WAIT of the engine's processes (default 30, the engine's own)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def playbook(steps: int, seconds: float, effects: Path) -> str:
    """`steps` shell steps, each writing its attempt's key when it starts and when it ends (`read` and `echo`
    are shell builtins: no process but the step's own and its `sleep`)."""
    effect = 'read t _ </proc/uptime; echo "$PLAYBOOK_IDEMPOTENCY_KEY {} $t" >> ' + str(effects)
    command = f"{effect.format('start')}; sleep {seconds}; {effect.format('end')}"
    lines = ["name: bench-recovery", "steps:"]
    for i in range(steps):
        lines += [f"  - id: s{i:04d}", "    action: shell", "    timeout_seconds: 60", "    args:",
                  f"      command: '{command}'"]
    return "\n".join(lines) + "\n"


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def side_effects(effects: Path, victims: set[str], dead: float) -> dict[str, Any]:
    """From the lines the steps wrote: lines written twice; lines of an attempt written after a later attempt of
    its step began (two attempts of a step alive at once); lines the victim's attempts wrote after it was dead
    (later than the tick of /proc/uptime, 10 ms, it died in), and the latest of them; steps whose effect began
    in more than one attempt (re-runs of interrupted attempts: at least once)."""
    written = [line.split() for line in effects.read_text().splitlines()] if effects.exists() else []
    twice = sum(n - 1 for n in collections.Counter((key, what) for key, what, _ in written).values() if n > 1)
    late = [float(at) - dead for key, _, at in written if key in victims and float(at) > dead + 0.01]
    began: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)
    for key, what, at in written:
        if what == "start":
            step, attempt = key.rsplit("/", 1)
            began[step].append((int(attempt), float(at)))
    overlapping = 0
    for key, _, at in written:
        step, attempt = key.rsplit("/", 1)
        overlapping += any(later > int(attempt) and float(at) > start for later, start in began[step])
    return {"lines": len(written), "written_twice": twice, "overlapping_attempts": overlapping,
            "victims_after_kill": len(late), "victims_latest_after_kill_ms": max(late, default=0.0) * 1000,
            "steps_begun_twice": sum(1 for starts in began.values() if len(starts) > 1)}


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
                lease: float) -> tuple[float, bool]:
    """Seconds after the kill the run could end at the soonest, from its events; and whether the victim held it.

    Its steps not succeeded by the kill, back to back; an attempt the victim held first waits
    for its lease to lapse, a lease after the victim's last renewal (they came every quarter
    lease after StepStarted); an attempt the survivor held is part done.
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
        return left + lease - age % (lease / 4), True
    return left - min(age, step_seconds), False


async def measure(url: str, runs: int, steps: int, step_seconds: float, lease: float,
                  ack_wait: float) -> dict[str, Any]:
    env = {"PLAYBOOK_ACK_WAIT": f"{ack_wait:g}", "PLAYBOOK_LEASE_SECONDS": f"{lease:g}"}
    with tempfile.TemporaryDirectory(prefix="pb-bench-recovery-") as home:
        effects = Path(home) / "effects"
        effects.touch(mode=0o666)        # steps may run as another user (nobody, when the engine is root)
        effects.chmod(0o666)
        Path(home).chmod(0o711)
        text = playbook(steps, step_seconds, effects)
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
                dead_uptime = uptime()          # the executor is reaped: from here on nothing of it may run
                unfinished = [r for r in ids if r not in ends.ended]

                timeout = 60 + lease * 5 + steps * step_seconds * 3
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
        victims = {f"{r}/{e.step_id}/{e.attempt}" for r, h in zip(ids, histories) for _, e in h
                   if isinstance(e, StepStarted) and e.executor == victim_name}
        effects_seen = side_effects(effects, victims, dead_uptime)

    duplicates, interrupted, attempts = 0, 0, 0
    floors = [soonest_end(history, killed_clock, victim_name, steps, step_seconds, lease) for history in histories]
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
        "lease_seconds": lease,
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
        "side_effects": effects_seen,
        "total_seconds": last_end - began,
        "ratios": {"recovery_vs_floor": recovery_s / floor_s if floor_s else None, "runs_lost": runs - completed,
                   "attempts_started_twice": duplicates, "side_effects_twice": effects_seen["written_twice"],
                   "overlapping_attempts": effects_seen["overlapping_attempts"],
                   "victim_effects_after_kill": effects_seen["victims_after_kill"]},
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    print(f"{result['runs']} runs x {result['steps']} shell steps of {result['step_seconds']:g} s, each writing its "
          f"attempt's key as it starts and ends; engine ({'+'.join(result['processes']['engine'])}) and 2 executors "
          f"in processes of their own, PLAYBOOK_LEASE_SECONDS={result['lease_seconds']:g}, "
          f"PLAYBOOK_ACK_WAIT={result['ack_wait_seconds']:g}; SIGKILL of the executor holding the most attempts "
          f"{result['killed_after_seconds']:.2f} s after the first StartRun "
          f"(held: {result['held_attempts_by_executor']}), "
          f"{result['runs_unfinished_at_kill']} runs unfinished then")
    print()
    effects = result["side_effects"]
    print_table(["measure", "value"], [
        ("recovery s (kill -> last run ended)", result["recovery_seconds"]),
        ("floor s (lease lapse + steps left, slowest run)", result["floor_seconds"]),
        ("runs completed", f"{result['runs_completed']} / {result['runs']}"),
        ("runs lost", result["runs_lost"]),
        ("attempts started", result["attempts_started"]),
        ("attempts started twice", result["attempts_started_twice"]),
        ("attempts interrupted (re-run as the next attempt)", result["interrupted_attempts"]),
        ("attempts the killed executor held", result["killed_executor_held_attempts"]),
        ("side-effect lines written", effects["lines"]),
        ("side-effect lines written twice", effects["written_twice"]),
        ("lines written after a later attempt of their step began", effects["overlapping_attempts"]),
        ("lines the killed executor's attempts wrote once it was dead", effects["victims_after_kill"]),
        ("  the latest of them, ms after its death", effects["victims_latest_after_kill_ms"]),
        ("steps begun in two attempts (interrupted, then re-run)", effects["steps_begun_twice"]),
    ])
    print()
    ratios = result["ratios"]
    vs_floor = "n/a" if ratios["recovery_vs_floor"] is None else f"{ratios['recovery_vs_floor']:.2f}x"
    within = "within" if result["recovery_seconds"] <= 5 else "NOT within"
    print(f"ratios: recovery {vs_floor} its floor (lease lapse + the steps left), {within} 5 s of the kill; "
          f"runs lost {ratios['runs_lost']} (target 0), attempts started twice {ratios['attempts_started_twice']} "
          f"(target 0), side effects twice {ratios['side_effects_twice']} (target 0), two attempts of a step "
          f"alive at once {ratios['overlapping_attempts']} (target 0), the killed executor's after the kill "
          f"{ratios['victim_effects_after_kill']} (target 0); {result['interrupted_attempts']} interrupted attempts "
          f"re-run")


async def run(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.steps < 1 or args.step_seconds <= 0 or args.ack_wait <= 0 or args.lease < 1:
        raise SystemExit("--runs and --steps must be at least 1, --step-seconds and --ack-wait above 0, --lease 1 "
                         "or more")
    with nats_server() as url:
        result = await measure(url, args.runs, args.steps, args.step_seconds, args.lease, args.ack_wait)
    return finish(NAME, result, args.json, report)
