"""replay: rebuilding every projection from the first event, against a raw read of the same stream.

N events of realistic runs (RunStarted, StepScheduled/Started/Succeeded per step,
RunCompleted; some with a retried failure, an approval gate, or a failed end) are
recorded as fast as the server takes them, pipelined; then `Projector.rebuild()` folds
them all, and an ordered consumer reads the same stream doing nothing with each message:
that raw read, in the same run against the same server, is the floor.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from bench.harness import RESULTS_DIR, finish, machine, median, nats_server, print_machine, print_table
from events import subjects
from events.codec import decode_event, encode
from events.run import (
    ApprovalGiven, ApprovalGranted, ApprovalRequested, RunCompleted, RunEvent, RunFailed, RunStarted,
    StepFailed, StepNotRetried, StepRetryScheduled, StepScheduled, StepStarted, StepSucceeded,
)
from projections.projector import Projector
from services.playbook import load_playbook
from services.store import EventStore

NAME = "replay"
HELP = "events/s of Projector.rebuild() over N recorded events, against a raw ordered-consumer read"
TARGET = 0.5               # rebuild rate / raw read rate we aim to stay above
WINDOW = 4096              # publishes awaiting their ack while recording
PLAYBOOKS = 5              # distinct playbook names, so the metrics hold a few of each
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=1_000_000, help="events to record (default 1000000)")
    parser.add_argument("--steps", type=int, default=10, help="steps per recorded run (default 10)")
    parser.add_argument("--repetitions", type=int, default=1,
                        help="rounds of raw read + rebuild; the median counts (default 1)")
    parser.add_argument("--profile", action="store_true",
                        help="one more rebuild under cProfile; prints where the time goes and writes the "
                             f"pstats beside the JSON (default bench/results/{NAME}.prof)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


# -- the recorded history -------------------------------------------------------------------

def _templates(steps: int) -> list[RunStarted]:
    """RunStarted of each playbook (the gated ones gate their last step), built once."""
    templates = []
    for p in range(PLAYBOOKS):
        for gated in (False, True):
            lines = [f"name: bench-replay-{p}", "steps:"]
            for i in range(steps):
                lines += [f"  - id: step{i:02d}", "    action: noop"]
                if gated and i == steps - 1:
                    lines += ["    approval_gate:", "      required_approvers: [ops-team]"]
            loaded = load_playbook("\n".join(lines) + "\n", f"bench-replay-{p}.yaml")
            templates.append(RunStarted(run_id="template", at=T0, actor="bench", playbook=loaded.playbook,
                                        plan=loaded.plan, parameters=loaded.parameters))
    return templates


def run_events(n: int, steps: int, templates: list[RunStarted]) -> list[RunEvent]:
    """One run's events as the engine writes them. Every 10th run retries a failed step,
    every 10th (another) waits at an approval gate, every 50th fails for good."""
    run_id = f"replay{n:07d}"
    gated, retried, fails = n % 10 == 7, n % 10 == 3, n % 50 == 9
    clock = T0 + timedelta(seconds=n * 7)

    def at() -> datetime:
        nonlocal clock
        clock += timedelta(milliseconds=40)
        return clock

    started = msgspec.structs.replace(templates[(n % PLAYBOOKS) * 2 + int(gated)], run_id=run_id, at=at())
    events: list[RunEvent] = [started]
    for i in range(steps):
        step = f"step{i:02d}"
        if gated and i == steps - 1:
            events += [ApprovalRequested(run_id=run_id, at=at(), step_id=step, message="deploy?",
                                         required_approvers=["ops-team"], min_approvals=1),
                       ApprovalGiven(run_id=run_id, at=at(), step_id=step, actor="alice", groups=["ops-team"]),
                       ApprovalGranted(run_id=run_id, at=at(), step_id=step, approvers=["alice"], actor="alice")]
        attempt = 1
        if (retried or fails) and i == steps // 2:
            events += [StepScheduled(run_id=run_id, at=at(), step_id=step, attempt=1),
                       StepStarted(run_id=run_id, at=at(), step_id=step, attempt=1, executor="bench-exec"),
                       StepFailed(run_id=run_id, at=at(), step_id=step, attempt=1, error="connection refused",
                                  category="network", duration_ms=35.0)]
            if fails:
                events += [StepNotRetried(run_id=run_id, at=at(), step_id=step, attempt=1, category="network",
                                          reason="no retry policy"),
                           RunFailed(run_id=run_id, at=at(), reason=f"step {step} failed", failed_steps=[step],
                                     duration_ms=(clock - started.at).total_seconds() * 1000)]
                return events
            due = at()
            events.append(StepRetryScheduled(run_id=run_id, at=due, step_id=step, attempt=2, delay_seconds=1.0,
                                             due=due + timedelta(seconds=1), category="network",
                                             reason="network errors are retried"))
            attempt = 2
        events += [StepScheduled(run_id=run_id, at=at(), step_id=step, attempt=attempt),
                   StepStarted(run_id=run_id, at=at(), step_id=step, attempt=attempt, executor="bench-exec"),
                   StepSucceeded(run_id=run_id, at=at(), step_id=step, attempt=attempt, duration_ms=12.5,
                                 outputs={"message": "ok"})]
    events.append(RunCompleted(run_id=run_id, at=at(), duration_ms=(clock - started.at).total_seconds() * 1000))
    return events


def history(total: int, steps: int, templates: list[RunStarted] | None = None
            ) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """(subject, payload, headers) of `total` events, whole runs but the last, with the
    headers the store sends. The stream is fresh and only we write, so each append's
    sequence is known in advance and the OCC headers can be right while pipelining."""
    templates = templates or _templates(steps)
    seq, n = 0, 0
    while seq < total:
        aggregate = subjects.run(f"replay{n:07d}")
        last = 0
        for event in run_events(n, steps, templates):
            if seq == total:
                return
            seq += 1
            yield f"{aggregate}.{type(event).__name__}", encode(event), {
                "Nats-Msg-Id": os.urandom(12).hex(),
                "Nats-Expected-Last-Subject-Sequence": str(last),
                "Nats-Expected-Last-Subject-Sequence-Subject": f"{aggregate}.>",
            }
            last = seq
        n += 1


async def record(nc: NATS, total: int, steps: int, templates: list[RunStarted] | None = None) -> dict[str, Any]:
    """Publish the history pipelined: up to WINDOW appends in flight, acks counted on one inbox."""
    inbox = nc.new_inbox()
    slots = asyncio.Semaphore(WINDOW)
    acked, errors, size = 0, [], 0
    all_acked = asyncio.Event()

    async def on_ack(msg) -> None:
        nonlocal acked
        acked += 1
        if b'"error"' in msg.data and len(errors) < 5:
            errors.append(msg.data.decode())
        slots.release()
        if acked == total:
            all_acked.set()

    sub = await nc.subscribe(inbox, cb=on_ack)
    began = time.perf_counter()
    try:
        for subject, payload, headers in history(total, steps, templates):
            await slots.acquire()
            size += len(payload)
            await nc.publish(subject, payload, reply=inbox, headers=headers)
        await asyncio.wait_for(all_acked.wait(), 120)
        seconds = time.perf_counter() - began
    finally:
        await sub.unsubscribe()
    if errors:
        raise RuntimeError(f"appends refused while recording: {errors}")
    return {"events": total, "seconds": seconds, "events_per_s": total / seconds, "mean_payload_bytes": size / total}


# -- reading it back --------------------------------------------------------------------------

async def _ordered(nc: NATS):
    """The projector's subscription: every subject of the stream, from the first event."""
    return await nc.jetstream().subscribe(
        f"{subjects.PREFIX}.>", stream=subjects.RUNS_STREAM, ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=1))


async def raw_read(nc: NATS, total: int) -> float:
    """Floor: seconds for an ordered consumer to receive every message, doing nothing with it."""
    sub = await _ordered(nc)
    began = time.perf_counter()
    try:
        count = 0
        async for _ in sub.messages:
            count += 1
            if count == total:
                break
        return time.perf_counter() - began
    finally:
        await sub.unsubscribe()


async def projector_transport(nc: NATS, total: int, decode: bool) -> float:
    """The projector's own loop without `_apply`: `next_msg` with a timeout and the
    message's metadata for every message; with `decode`, the event decoded as well."""
    sub = await _ordered(nc)
    began = time.perf_counter()
    try:
        while True:
            msg = await sub.next_msg(timeout=5.0)
            meta = msg.metadata
            if decode:
                decode_event(msg.data)
            if not meta.num_pending:
                break
        return time.perf_counter() - began
    finally:
        await sub.unsubscribe()


async def rebuild(nc: NATS, snapshot: Path) -> tuple[float, dict[str, Any], Projector]:
    """Seconds for `Projector.rebuild()` of a fresh projector (snapshot file included, as
    the web server keeps one), and what it reported."""
    projector = Projector(nc, snapshot)
    began = time.perf_counter()
    report = await projector.rebuild()
    seconds = time.perf_counter() - began
    await projector.stop()
    return seconds, report, projector


async def profiled_rebuild(nc: NATS, snapshot: Path, target: Path) -> dict[str, Any]:
    """One rebuild under cProfile: the functions that take the time, by own time and cumulative."""
    profile = cProfile.Profile()
    profile.enable()
    seconds, report, _ = await rebuild(nc, snapshot)
    profile.disable()
    profile.dump_stats(str(target))
    stats = pstats.Stats(profile)
    total = sum(row[2] for row in stats.stats.values())   # type: ignore[attr-defined]

    def rows(key: int, limit: int, only: str | None = None) -> list[dict[str, Any]]:
        found = []
        for (path, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():   # type: ignore[attr-defined]
            if only is not None and only not in path:
                continue
            found.append({"function": f"{_short(path)}:{line}({name})", "calls": calls,
                          "tottime_s": round(tottime, 3), "cumtime_s": round(cumtime, 3)})
        found.sort(key=lambda r: r["tottime_s" if key == 2 else "cumtime_s"], reverse=True)
        return found[:limit]

    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
    return {
        "seconds": seconds, "events": report["events"], "profiled_total_s": round(total, 3), "pstats": str(target),
        "top_tottime": rows(2, 25),
        "projections_cumtime": rows(3, 25, only=f"{os.sep}projections{os.sep}"),
        "text": text.getvalue(),
    }


def _short(path: str) -> str:
    for marker in (f"{os.sep}site-packages{os.sep}", f"{os.sep}main{os.sep}", f"{os.sep}lib{os.sep}python"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# -- the benchmark ----------------------------------------------------------------------------

async def measure(url: str, total: int, steps: int, repetitions: int, profile: Path | None, home: Path) -> dict[str,
                                                                                                                Any]:
    writer = await nats.connect(url, name="bench-replay-writer")
    reader = await nats.connect(url, name="bench-replay-reader")
    try:
        await EventStore(writer).ensure_stream()
        recorded = await record(writer, total, steps)
        info = await writer.jetstream().stream_info(subjects.RUNS_STREAM)
        if info.state.messages != total:
            raise RuntimeError(f"the stream holds {info.state.messages} messages, not {total}")

        rounds: dict[str, list[float]] = {"raw": [], "transport": [], "decode": [], "rebuild": []}
        cpu: dict[str, list[float]] = {kind: [] for kind in rounds}
        report: dict[str, Any] = {}
        views: dict[str, Any] = {}
        for _ in range(repetitions):   # interleaved, so drift hits the floor and the rebuild alike
            for kind, read in (("raw", lambda: raw_read(reader, total)),
                               ("transport", lambda: projector_transport(reader, total, decode=False)),
                               ("decode", lambda: projector_transport(reader, total, decode=True))):
                began = time.process_time()
                rounds[kind].append(await read())
                cpu[kind].append(time.process_time() - began)
            began = time.process_time()
            seconds, report, projector = await rebuild(reader, home / "views.msgpack")
            cpu["rebuild"].append(time.process_time() - began)
            rounds["rebuild"].append(seconds)
            began = time.perf_counter()
            encoded = msgspec.msgpack.encode(projector.views)
            views = {"runs": len(projector.views.runs), "audit_entries": len(projector.views.audit.entries),
                     "playbooks": len(projector.views.metrics.playbooks), "snapshot_bytes": len(encoded),
                     "snapshot_encode_s": time.perf_counter() - began, "applied": projector.applied}
            if projector.applied != total:
                raise RuntimeError(f"the rebuild applied {projector.applied} events, not {total}")
        profiled = await profiled_rebuild(reader, home / "views.msgpack", profile) if profile else None
    finally:
        await reader.close()
        await writer.close()

    rates = {kind: total / median(seconds) for kind, seconds in rounds.items()}
    result: dict[str, Any] = {
        "benchmark": NAME,
        "events": total,
        "steps_per_run": steps,
        "repetitions": repetitions,
        "machine": machine(),
        "recorded": recorded,
        "seconds": rounds,
        "cpu_seconds": cpu,   # this process's CPU time (all threads) during each read
        "events_per_s": rates,
        "cpu_us_per_event": {kind: median(s) / total * 1e6 for kind, s in cpu.items()},
        "rebuild_report": report,
        "views": views,
        "target_ratio": TARGET,
        "ratios": {"rebuild_vs_raw": rates["rebuild"] / rates["raw"],
                   "transport_vs_raw": rates["transport"] / rates["raw"],
                   "decode_vs_raw": rates["decode"] / rates["raw"]},
    }
    if profiled is not None:
        result["profile"] = profiled
    return result


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    rec, views = result["recorded"], result["views"]
    print(f"recorded {result['events']} events ({views['runs']} runs of {result['steps_per_run']} steps, "
          f"{rec['mean_payload_bytes']:.0f} B mean payload) in {rec['seconds']:.1f} s "
          f"({rec['events_per_s']:.0f} events/s, {WINDOW} appends in flight); "
          f"repetitions: {result['repetitions']} (median)")
    print()
    rates, seconds = result["events_per_s"], result["seconds"]
    raw = rates["raw"]
    labels = {
        "raw": "raw read (ordered consumer, nothing done)  [floor]",
        "transport": "projector's loop without _apply (next_msg + metadata)",
        "decode": "... + decode_event",
        "rebuild": "Projector.rebuild() (all views + snapshot)",
    }
    cpu_us = result["cpu_us_per_event"]
    rows = [(labels[kind], median(seconds[kind]), f"{rates[kind]:.0f}", f"{rates[kind] / raw:.2f}x",
             f"{cpu_us[kind]:.1f}", f"{median(result['cpu_seconds'][kind]) / median(seconds[kind]) * 100:.0f}%")
            for kind in ("raw", "transport", "decode", "rebuild")]
    print_table(["read", "seconds", "events/s", "vs raw", "cpu us/event", "cpu busy"], rows)
    print(f"views: {views['runs']} runs, {views['audit_entries']} audit entries, snapshot "
          f"{views['snapshot_bytes'] / 2**20:.1f} MiB (encoded in {views['snapshot_encode_s']:.2f} s)")
    if "profile" in result:
        prof = result["profile"]
        print()
        print(f"cProfile of one more rebuild ({prof['seconds']:.1f} s under the profiler; {prof['pstats']}):")
        print_table(["function (by own time)", "calls", "tottime s", "cumtime s"],
                    [(r["function"], r["calls"], r["tottime_s"], r["cumtime_s"]) for r in prof["top_tottime"][:15]])
        print()
        print_table(["projections/ (by cumulative time)", "calls", "tottime s", "cumtime s"],
                    [(r["function"], r["calls"], r["tottime_s"], r["cumtime_s"])
                     for r in prof["projections_cumtime"][:12]])
    print()
    ratio = result["ratios"]["rebuild_vs_raw"]
    print(f"ratios: rebuild {ratio:.2f}x raw read rate ({rates['rebuild']:.0f} vs {raw:.0f} events/s; "
          f"target >= {result['target_ratio']:g}x)")


async def run(args: argparse.Namespace) -> int:
    if args.events < 1 or args.steps < 1 or args.repetitions < 1:
        raise SystemExit("--events, --steps and --repetitions must be at least 1")
    with nats_server() as url, tempfile.TemporaryDirectory(prefix="pb-bench-replay-") as home:
        where = Path(args.json).with_suffix(".prof") if args.json else RESULTS_DIR / f"{NAME}.prof"
        profile = where if args.profile else None
        result = await measure(url, args.events, args.steps, args.repetitions, profile, Path(home))
    return finish(NAME, result, args.json, report)
