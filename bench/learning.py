"""learning: how fast the learning service learns, against a raw read of the same events.

N events of realistic runs (HTTP steps with a retried failure, approval gates, failed
ends; bench/replay.py writes them) are recorded; an ordered consumer with a callback, as
the service has, reads them doing nothing: that raw read is the floor. Then a learning service with a fresh SQLite store
(or PostgreSQL, with --postgres URL) learns them all from the first event (catch-up),
follows L more events published live at --rate events/s (its lag sampled throughout),
and is restarted on its store until it answers insights (snapshots keep that short).
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from bench.harness import machine, median, nats_server, print_machine, print_table, write_result
from bench.replay import T0, record, run_events
from events import subjects
from events.codec import encode
from events.run import RunStarted
from services.learning.config import LearningConfig, postgres_settings
from services.learning.service import LearningService
from services.playbook import load_playbook
from services.store import EventStore
from events.identity import caller_headers
from services.identity.bootstrap import ensure_local_admin
from services.identity.setup import Identity
from ui.insights import LearningClient

NAME = "learning"
HELP = "events/s the learning service learns (catch-up and live), against a raw ordered-consumer read"
TARGET_EVENTS_PER_S = 5000
PLAYBOOKS = 5
WINDOW = 1024               # live publishes awaiting their ack
SAMPLE_SECONDS = 0.05
LIVE_RUNS = 9_000_000        # run numbers of the live runs start here, after any recorded one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=100_000, help="events recorded before the service starts")
    parser.add_argument("--live", type=int, default=50_000, help="events published while the service follows")
    parser.add_argument("--rate", type=int, default=TARGET_EVENTS_PER_S, help="live events per second")
    parser.add_argument("--steps", type=int, default=10, help="steps per recorded run (default 10)")
    parser.add_argument("--repetitions", type=int, default=3, help="raw reads; the median is the floor")
    parser.add_argument("--postgres", metavar="URL", help="learn into PostgreSQL (postgresql://user:pw@host:port/db)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def templates(steps: int) -> list[RunStarted]:
    """RunStarted of each playbook: HTTP steps on a service of its own (a target), the gated ones gate their last."""
    found = []
    for p in range(PLAYBOOKS):
        for gated in (False, True):
            lines = [f"name: bench-learning-{p}", "steps:"]
            for i in range(steps):
                lines += [f"  - id: step{i:02d}", "    action: http_request",
                          f"    args: {{url: 'http://svc-{p}.internal/step{i}'}}",
                          "    retry: {max_attempts: 3, base_delay: 1}"]
                if gated and i == steps - 1:
                    lines += ["    approval_gate:", "      required_approvers: [ops-team]"]
            loaded = load_playbook("\n".join(lines) + "\n", f"bench-learning-{p}.yaml")
            found.append(RunStarted(run_id="template", at=T0, actor="bench", playbook=loaded.playbook,
                                    plan=loaded.plan, parameters=loaded.parameters))
    return found


async def publish_live(nc: NATS, first_run: int, total: int, rate: int, steps: int,
                       shapes: list[RunStarted]) -> dict[str, Any]:
    """`total` more events of new runs at `rate` per second, pipelined; returns when all are acked."""
    inbox = nc.new_inbox()
    slots = asyncio.Semaphore(WINDOW)
    acked, sent = 0, 0
    done = asyncio.Event()

    async def on_ack(_msg) -> None:
        nonlocal acked
        acked += 1
        slots.release()
        if acked == total:
            done.set()

    sub = await nc.subscribe(inbox, cb=on_ack)
    began = time.perf_counter()
    n = first_run
    try:
        while sent < total:
            for event in run_events(n, steps, shapes):
                if sent == total:
                    break
                due = began + sent / rate
                if (ahead := due - time.perf_counter()) > 0:
                    await asyncio.sleep(ahead)       # pacing the load, not waiting for an outcome
                await slots.acquire()
                await nc.publish(subjects.run_event(event.run_id, type(event).__name__), encode(event), reply=inbox)
                sent += 1
            n += 1
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await sub.unsubscribe()
    seconds = time.perf_counter() - began
    return {"events": total, "seconds": seconds, "events_per_s": total / seconds}


async def raw_read(nc: NATS, total: int) -> float:
    """Floor: seconds for an ordered consumer with a callback, as the service reads, to receive every message."""
    done = asyncio.Event()
    count = 0

    async def on_message(_msg) -> None:
        nonlocal count
        count += 1
        if count == total:
            done.set()

    began = time.perf_counter()
    sub = await nc.jetstream().subscribe(f"{subjects.PREFIX}.>", stream=subjects.RUNS_STREAM, ordered_consumer=True,
                                         cb=on_message, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    try:
        await asyncio.wait_for(done.wait(), 600)
        return time.perf_counter() - began
    finally:
        await sub.unsubscribe()


async def sample_lag(service: LearningService, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(await service.lag())
        await asyncio.sleep(SAMPLE_SECONDS)


async def measure(url: str, args: argparse.Namespace, home: Path) -> dict[str, Any]:
    config = LearningConfig(directory=home / "learning",
                            postgres=postgres_settings(args.postgres) if args.postgres else None)
    writer = await nats.connect(url, name="bench-learning-writer")
    reader = await nats.connect(url, name="bench-learning-reader")
    try:
        store = EventStore(writer)
        await store.ensure_stream()
        shapes = templates(args.steps)
        recorded = await record(writer, args.events, args.steps, shapes)
        raw = [await raw_read(reader, args.events) for _ in range(args.repetitions)]

        identity = await Identity.start(reader, lambda _name: [])     # what the root hands the service
        admin = (await ensure_local_admin(home, identity.store, identity.registry, name="bench",
                                          now=datetime.now(timezone.utc))).credential
        service = LearningService(reader, EventStore(reader), config, identity.guard)
        began = time.perf_counter()
        await service.start()
        try:
            await service.wait_for(args.events, timeout=600)
            catch_up = time.perf_counter() - began
            samples: list[int] = []
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_lag(service, samples, stop))
            live = await publish_live(writer, LIVE_RUNS, args.live, args.rate, args.steps, shapes)
            last = (await writer.jetstream().stream_info(subjects.RUNS_STREAM)).state.last_seq
            published = time.perf_counter()
            await service.wait_for(last, timeout=600)
            drained = time.perf_counter() - published
            stop.set()
            await sampler
        finally:
            await service.stop()

        again = LearningService(reader, EventStore(reader), config, identity.guard)
        began = time.perf_counter()
        await again.start()
        try:
            insights = await LearningClient(reader, caller_headers(admin)).insights(after=last, wait=30)
            reopen = time.perf_counter() - began
        finally:
            await again.stop()
            await identity.stop()
    finally:
        await reader.close()
        await writer.close()

    raw_rate = args.events / median(raw)
    learn_rate = args.events / catch_up
    return {
        "benchmark": NAME, "events": args.events, "live_events": args.live, "rate": args.rate,
        "steps_per_run": args.steps, "backend": config.backend, "machine": machine(),
        "recorded": recorded,
        "seconds": {"raw": raw, "catch_up": catch_up, "drain_after_live": drained, "reopen_to_insights": reopen},
        "events_per_s": {"raw": raw_rate, "catch_up": learn_rate, "live_published": live["events_per_s"]},
        "live_lag": {"max": max(samples, default=0), "median": median(samples), "samples": len(samples)},
        "learned": {"position": insights.position, "playbooks": len(insights.playbooks),
                    "targets": len(insights.targets),
                    "recommendations": sum(len(p.recommendations) for p in insights.playbooks)},
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "ratios": {"catch_up_vs_raw": learn_rate / raw_rate, "catch_up_vs_target": learn_rate / TARGET_EVENTS_PER_S},
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    rec, seconds, rates = result["recorded"], result["seconds"], result["events_per_s"]
    print(f"recorded {result['events']} events in {rec['seconds']:.1f} s; store: {result['backend']}")
    print()
    print_table(["read", "seconds", "events/s", "vs raw"], [
        ("raw read (ordered consumer, nothing done)  [floor]", median(seconds["raw"]), f"{rates['raw']:.0f}", "1.00x"),
        ("learning service from the first event", seconds["catch_up"], f"{rates['catch_up']:.0f}",
         f"{rates['catch_up'] / rates['raw']:.2f}x"),
    ])
    lag = result["live_lag"]
    print(f"live: {result['live_events']} events at {rates['live_published']:.0f} events/s: lag max {lag['max']} "
          f"events, median {lag['median']:.0f}; learned {seconds['drain_after_live']:.2f} s after the last publish")
    print(f"restart on the same store to the first insights answer: {seconds['reopen_to_insights']:.2f} s "
          f"({result['learned']['playbooks']} playbooks, {result['learned']['targets']} targets, "
          f"{result['learned']['recommendations']} recommendations)")
    print()
    ratios = result["ratios"]
    print(f"ratios: catch-up {ratios['catch_up_vs_raw']:.2f}x raw read rate ({rates['catch_up']:.0f} vs "
          f"{rates['raw']:.0f} events/s); {ratios['catch_up_vs_target']:.2f}x the target of "
          f"{result['target_events_per_s']} events/s")


async def run(args: argparse.Namespace) -> int:
    if min(args.events, args.live, args.rate, args.steps, args.repetitions) < 1:
        raise SystemExit("--events, --live, --rate, --steps and --repetitions must be at least 1")
    with nats_server() as url, tempfile.TemporaryDirectory(prefix="pb-bench-learning-") as home:
        result = await measure(url, args, Path(home))
    report(result)
    print(f"result: {write_result(NAME, result, args.json)}")
    return 0
