"""waiting: what a run parked on an approval gate costs the engine's services while it waits.

The services (run + executor + approval) run in a process of their own, so their RSS
(`VmRSS` in /proc/<pid>/status) is theirs alone, not the benchmark's. After a warm-up of
gated runs, N more runs are started and left waiting at their gate; the services' RSS
growth divided by N is what one waiting run costs. The nats-server's RSS is reported too,
for information: it holds the stream, so it is expected to grow with the runs' events.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats

from bench.harness import ServicesProcess, admin_token, finish, machine, nats_server, print_machine, print_table
from events import subjects
from events.commands import StartRun
from ui.client import EngineClient

NAME = "waiting"
HELP = "services' memory per run parked on an approval gate (services in their own process)"
TARGET_BYTES = 2048        # per waiting run
WARMUP_RUNS = 50
BATCH = 200                # StartRun requests in flight at once

PLAYBOOK = """\
name: bench-waiting
steps:
  - id: build
    action: noop
  - id: deploy
    action: noop
    approval_gate:
      required_approvers: [ops-team]
      timeout_seconds: 86400
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=5000, help="gated runs left waiting (default 5000)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def nats_server_pid(url: str) -> int | None:
    """The harness's nats-server: our child listening on the URL's port."""
    port = url.rsplit(":", 1)[1]
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and b"-p" in argv and port.encode() in argv:
            return int(entry.name)
    return None


async def settled_rss(pid: int, reads: int = 3) -> int:
    """RSS read `reads` times 1 s apart; the last counts."""
    value = 0
    for i in range(reads):
        if i:
            await asyncio.sleep(1.0)
        value = rss_bytes(pid)
    return value


def start_services(url: str, home: str) -> ServicesProcess:
    """Run, executor and approval in a child process, with a directory that makes alice an approver."""
    directory = Path(home) / "directory.yaml"
    directory.write_text("users:\n  alice: [ops-team]\n")
    return ServicesProcess(url, ["run", "executor", "approval"], home, PLAYBOOK_DIRECTORY=str(directory))


async def start_gated(client: EngineClient, count: int, prefix: str) -> None:
    """Start `count` gated runs, BATCH StartRun requests in flight at once."""
    async def one(i: int) -> None:
        reply = await client.send(StartRun(playbook=PLAYBOOK, run_id=f"{prefix}-{i:06d}"), timeout=120)
        if not reply.accepted:
            raise RuntimeError(f"StartRun rejected: {reply.error.message if reply.error else reply}")

    for first in range(0, count, BATCH):
        await asyncio.gather(*(one(i) for i in range(first, min(first + BATCH, count))))


async def until_waiting(requested: set[str], prefix: str, count: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while sum(1 for r in requested if r.startswith(prefix)) < count:
            await asyncio.sleep(0.05)


async def measure(url: str, runs: int) -> dict[str, Any]:
    server_pid = nats_server_pid(url)
    with tempfile.TemporaryDirectory(prefix="pb-bench-waiting-") as home:
        services = start_services(url, home)
        try:
            await services.ready()
            nc = await nats.connect(url, name="bench-client")
            try:
                client = EngineClient(nc, admin_token(home))
                requested: set[str] = set()

                async def on_request(msg) -> None:
                    requested.add(msg.subject.split(".")[2])

                await nc.subscribe(subjects.events_of_type("ApprovalRequested"), cb=on_request)
                tag = uuid.uuid4().hex[:8]

                warm = f"warm{tag}"
                await start_gated(client, WARMUP_RUNS, warm)
                await until_waiting(requested, warm, WARMUP_RUNS, 60)
                services_before = await settled_rss(services.pid)
                server_before = rss_bytes(server_pid) if server_pid else None

                gated = f"gated{tag}"
                began = time.perf_counter()
                await start_gated(client, runs, gated)
                started_s = time.perf_counter() - began
                await until_waiting(requested, gated, runs, 120 + runs * 0.1)
                waiting_s = time.perf_counter() - began
                services_after = await settled_rss(services.pid)
                server_after = rss_bytes(server_pid) if server_pid else None

                listed = await client.list_runs()
                waiting = sum(1 for r in listed if r.status == "waiting_approval" or r.gates_waiting > 0)
            finally:
                await nc.close()
        finally:
            services.stop()

    growth = services_after - services_before
    per_run = growth / runs
    result: dict[str, Any] = {
        "benchmark": NAME,
        "runs": runs,
        "warmup_runs": WARMUP_RUNS,
        "machine": machine(),
        "services": {
            "rss_before_bytes": services_before,
            "rss_after_bytes": services_after,
            "growth_bytes": growth,
            "bytes_per_waiting_run": per_run,
        },
        "nats_server": {
            "rss_before_bytes": server_before,
            "rss_after_bytes": server_after,
            "growth_bytes": (server_after - server_before) if server_pid else None,
            "bytes_per_waiting_run": (server_after - server_before) / runs if server_pid else None,
        },
        "waiting_in_list_runs": waiting,
        "start_seconds": started_s,
        "all_waiting_seconds": waiting_s,
        "target_bytes_per_run": TARGET_BYTES,
        "ratios": {"bytes_per_waiting_run": per_run},
    }
    return result


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f} MiB"


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    print(f"gated runs waiting: {result['runs']} (+{result['warmup_runs']} warm-up), started in "
          f"{result['start_seconds']:.1f} s, all at their gate after {result['all_waiting_seconds']:.1f} s; "
          f"list_runs shows {result['waiting_in_list_runs']} waiting_approval")
    print()
    rows = []
    for label, key in (("services (run+executor+approval)", "services"), ("nats-server (info)", "nats_server")):
        m = result[key]
        per = m["bytes_per_waiting_run"]
        rows.append((label, result["runs"], _mib(m["rss_before_bytes"]), _mib(m["rss_after_bytes"]),
                     _mib(m["growth_bytes"]), "n/a" if per is None else f"{per:.0f}"))
    print_table(["process", "runs waiting", "RSS before", "RSS after", "growth", "bytes/waiting run"], rows)
    print()
    print(f"ratios: {result['services']['bytes_per_waiting_run']:.0f} bytes per waiting run "
          f"(target < {result['target_bytes_per_run']})")


async def run(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    with nats_server() as url:
        result = await measure(url, args.runs)
    return finish(NAME, result, args.json, report)
