"""cluster: the engine on a 3-server JetStream cluster: events/s at 3 replicas against 1, and a leader killed.

Throughput: the same runs of `noop` steps, first with PB_RUNS at one replica, then at
three (the stream scaled up in place), on the same servers in the same run: R3's events
per second against R1's, its floor.

Failover: runs in flight with PB_RUNS at three replicas. The stream's leader is first
asked to step down (a polite change: the floor), later SIGKILLed. What counts: the time
from each to the first event the stream stores after it (the server's own stamp), the
kill's against the step-down's; runs lost (target 0); attempts started twice (target 0).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from app.cluster import engine_url, local_cluster
from bench.harness import InProcess, RunEnds, engine, finish, machine, print_machine, print_table, wait_playbook
from events import subjects
from events.commands import StartRun
from events.run import TERMINAL_EVENTS, StepFailed, StepStarted
from services.embedded import EmbeddedCluster
from services.jetstream import Unanswered, persist
from services.store import EventStore
from ui.client import EngineClient

NAME = "cluster"
HELP = "3-server JetStream cluster: events/s at R3 against R1; stream leader step-down and SIGKILL: time to commit"
STEP_DOWN_AT, KILL_AT = 1 / 6, 1 / 3     # of the failover runs' steps succeeded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=100, help="runs in flight when the leader dies (default 100)")
    parser.add_argument("--steps", type=int, default=4, help="wait steps per failover run (default 4)")
    parser.add_argument("--step-seconds", type=float, default=0.5, help="each failover step's wait (default 0.5)")
    parser.add_argument("--throughput-runs", type=int, default=40, help="runs per replica count (default 40)")
    parser.add_argument("--throughput-steps", type=int, default=10, help="noop steps per run (default 10)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


async def events_per_second(running: InProcess, replicas: int, runs: int, steps: int) -> dict[str, Any]:
    """The stream scaled to `replicas`, then `runs` runs of `steps` noop steps at once, start to last end."""
    nc = running.nc
    store = EventStore(nc)
    await store.ensure_stream(replicas)
    await _until_replicated(nc, replicas)
    client = EngineClient(nc, running.credential)
    text = "name: bench-cluster-throughput\nsteps:\n" + "".join(
        f"  - id: s{i:04d}\n    action: noop\n" for i in range(steps))
    ends = await RunEnds(nc).start()
    first = (await nc.jetstream().stream_info(subjects.RUNS_STREAM)).state.last_seq
    began = time.perf_counter()
    ids = await start_runs(client, text, f"tp{replicas}", runs)
    await ends.wait(ids, 300)
    seconds = max(ends.ended[r][1] for r in ids) - began
    await ends.stop()
    events = (await nc.jetstream().stream_info(subjects.RUNS_STREAM)).state.last_seq - first
    return {"replicas": replicas, "runs": runs, "events": events, "seconds": seconds, "events_per_second":
            events / seconds}


async def start_runs(client: EngineClient, text: str, prefix: str, runs: int) -> list[str]:
    """`runs` runs of the playbook started at once, their ids `<prefix><tag>-NNNN`."""
    tag = uuid.uuid4().hex[:8]
    ids = [f"{prefix}{tag}-{i:04d}" for i in range(runs)]
    replies = await asyncio.gather(*(client.send(StartRun(playbook=text, run_id=r), timeout=120) for r in ids))
    if rejected := [r for r in replies if not r.accepted]:
        raise RuntimeError(f"{len(rejected)} StartRun rejected: {rejected[0].error}")
    return ids


async def _until_replicated(nc: NATS, replicas: int) -> None:
    """Until the stream has its replicas, each current (a scale-up copies the stream first)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = await persist(lambda: nc.jetstream().stream_info(subjects.RUNS_STREAM), "asking for the replicas")
        peers = info.cluster.replicas or [] if info.cluster else []
        if info.config.num_replicas == replicas and len(peers) == replicas - 1 and all(p.current for p in peers):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the stream did not reach {replicas} current replicas within 60 s")


async def first_commit_after(nc: NATS, moment: float) -> float:
    """Seconds from `moment` (wall clock) to the first event the stream stored after it, by the server's stamp."""
    request = json.dumps({"start_time": datetime.fromtimestamp(moment, timezone.utc).isoformat()}).encode()
    msg = await persist(lambda: nc.request(f"$JS.API.DIRECT.GET.{subjects.RUNS_STREAM}", request, timeout=10),
                        "reading the first event after a moment")
    stamp = (msg.headers or {}).get("Nats-Time-Stamp", "")
    if not stamp:
        raise RuntimeError(f"nothing stored after {request.decode()}: {msg.headers}")
    stored = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00")   # nanoseconds cut to microseconds
    return stored.timestamp() - moment


async def history_to_its_end(client: EngineClient, run_id: str, ended: bool) -> list[tuple[int, Any]]:
    """The run's events; read again while they lack the end seen published (a follower's direct get may lag)."""
    deadline = time.monotonic() + 30
    while True:
        history = await client.events(run_id)
        if not ended or (history and isinstance(history[-1][1], TERMINAL_EVENTS)) or time.monotonic() > deadline:
            return history
        await asyncio.sleep(0.1)


async def leader(nc: NATS) -> str:
    """The stream leader's name, asked again while the stream elects one."""
    async def ask() -> str:
        info = await nc.jetstream().stream_info(subjects.RUNS_STREAM)
        if not info.cluster or not info.cluster.leader:
            raise Unanswered("no stream leader yet")
        return str(info.cluster.leader)
    return await persist(ask, "asking for the stream leader")


async def failover(running: InProcess, cluster: EmbeddedCluster, runs: int, steps: int,
                   step_seconds: float) -> dict[str, Any]:
    """Runs in flight; at a sixth of their steps the leader steps down, at a third it is SIGKILLed."""
    nc = running.nc
    client = EngineClient(nc, running.credential)
    ends = await RunEnds(nc).start()
    succeeded = 0
    progress = {share: asyncio.Event() for share in (STEP_DOWN_AT, KILL_AT)}

    async def on_succeeded(_msg: Any) -> None:
        nonlocal succeeded
        succeeded += 1
        for share, reached in progress.items():
            if succeeded >= runs * steps * share:
                reached.set()
    sub = await nc.subscribe(subjects.events_of_type("StepSucceeded"), cb=on_succeeded)
    text = wait_playbook("bench-cluster-failover", steps, step_seconds, timeout_seconds="60")
    began = time.perf_counter()
    ids = await start_runs(client, text, "fo", runs)

    await asyncio.wait_for(progress[STEP_DOWN_AT].wait(), 120)
    stepped_from, stepped_at = await leader(nc), time.time()
    await persist(lambda: nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{subjects.RUNS_STREAM}", b"", timeout=10),
                  "asking the leader to step down")

    await asyncio.wait_for(progress[KILL_AT].wait(), 120)
    victim = await leader(nc)
    cluster.kill(victim)                  # returns once the process is gone
    killed_at, killed_clock = time.time(), time.perf_counter()
    unfinished = sum(1 for r in ids if r not in ends.ended)
    if not unfinished:
        raise RuntimeError("every run ended before the leader was killed: give more --steps or --step-seconds")
    try:
        await ends.wait(ids, 120 + steps * step_seconds * 3)
    except TimeoutError:
        pass       # a run's end may have been published while this client reconnected: its history says
    await sub.unsubscribe()
    await ends.stop()
    histories = await asyncio.gather(*(history_to_its_end(client, r, r in ends.ended) for r in ids))
    completed = sum(1 for h in histories if h and type(h[-1][1]).__name__ == "RunCompleted")
    starts = [collections.Counter((e.step_id, e.attempt) for _, e in h if isinstance(e, StepStarted))
              for h in histories]
    ended_at = [ends.ended[r][1] for r in ids if r in ends.ended]
    return {
        "runs": runs, "steps": steps, "step_seconds": step_seconds,
        "step_down_from": stepped_from, "killed_leader": victim, "new_leader": await leader(nc),
        "runs_unfinished_at_kill": unfinished,
        "step_down_to_first_commit_seconds": await first_commit_after(nc, stepped_at),
        "kill_to_first_commit_seconds": await first_commit_after(nc, killed_at),
        "kill_to_last_run_end_seconds": (max(ended_at) - killed_clock) if ended_at else None,
        "runs_completed": completed, "runs_lost": runs - completed,
        "runs_not_completed": {r: (type(h[-1][1]).__name__ if h else "nothing stored")
                               for r, h in zip(ids, histories) if not h or type(h[-1][1]).__name__ != "RunCompleted"},
        "attempts_started_twice": sum(n - 1 for s in starts for n in s.values() if n > 1),
        "interrupted_attempts": sum(1 for h in histories for _, e in h
                                    if isinstance(e, StepFailed) and e.category == "interrupted"),
        "total_seconds": time.perf_counter() - began,
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pb-bench-cluster-") as home:
        cluster = local_cluster(Path(home), 3)
        await cluster.start()
        try:
            # Identity's streams at 3 replicas from the start, PB_RUNS scaled to each count measured.
            async with engine(engine_url(cluster), environ={"PLAYBOOK_STREAM_REPLICAS": "3"}) as running:
                r1 = await events_per_second(running, 1, args.throughput_runs, args.throughput_steps)
                r3 = await events_per_second(running, 3, args.throughput_runs, args.throughput_steps)
                killed = await failover(running, cluster, args.runs, args.steps, args.step_seconds)
        finally:
            cluster.stop()
    return {
        "benchmark": NAME, "machine": machine(), "servers": 3,
        "throughput": {"r1": r1, "r3": r3},
        "failover": killed,
        "ratios": {
            "r3_events_per_second_vs_r1": r3["events_per_second"] / r1["events_per_second"],
            "kill_vs_step_down_to_first_commit": (killed["kill_to_first_commit_seconds"]
                                                  / killed["step_down_to_first_commit_seconds"]),
            "runs_lost": killed["runs_lost"], "attempts_started_twice": killed["attempts_started_twice"],
        },
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    tp, fo = result["throughput"], result["failover"]
    print(f"3 nats-servers on this machine, the engine in one process; throughput: {tp['r1']['runs']} runs of "
          f"noop steps at once per replica count; failover: {fo['runs']} runs x {fo['steps']} `wait` steps of "
          f"{fo['step_seconds']:g} s, the stream leader asked to step down, then SIGKILLed "
          f"({fo['runs_unfinished_at_kill']} runs unfinished then)")
    print()
    print_table(["measure", "value"], [
        ("events/s, PB_RUNS at 1 replica", tp["r1"]["events_per_second"]),
        ("events/s, PB_RUNS at 3 replicas", tp["r3"]["events_per_second"]),
        ("step-down -> first commit, s", fo["step_down_to_first_commit_seconds"]),
        ("SIGKILL of the leader -> first commit, s", fo["kill_to_first_commit_seconds"]),
        ("SIGKILL -> last run ended, s", fo["kill_to_last_run_end_seconds"]),
        ("runs completed", f"{fo['runs_completed']} / {fo['runs']}"),
        ("runs lost", fo["runs_lost"]),
        ("attempts started twice", fo["attempts_started_twice"]),
        ("attempts interrupted", fo["interrupted_attempts"]),
    ])
    print()
    ratios = result["ratios"]
    print(f"ratios: R3 events/s {ratios['r3_events_per_second_vs_r1']:.2f}x R1's; leader SIGKILL -> first commit "
          f"{ratios['kill_vs_step_down_to_first_commit']:.1f}x a step-down's; runs lost {ratios['runs_lost']} "
          f"(target 0), attempts started twice {ratios['attempts_started_twice']} (target 0)")


async def run(args: argparse.Namespace) -> int:
    if min(args.runs, args.steps, args.throughput_runs, args.throughput_steps) < 1 or args.step_seconds <= 0:
        raise SystemExit("--runs, --steps, --throughput-runs and --throughput-steps must be at least 1, "
                         "--step-seconds above 0")
    return finish(NAME, await measure(args), args.json, report)
