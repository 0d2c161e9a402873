"""The feed misses nothing: every event stored in PB_RUNS reaches a plain NATS subscriber, those a
message schedule stores included (a retry's StepScheduled, a gate's ApprovalDeadlinePassed), in
stream order with its sequence; a JetStream consumer that joins late catches up on the same events.

Both sides are the example agent's (examples/feed_agent.py), so the example is what is tested.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from aiohttp import web

from events import subjects
from events.codec import encode
from events.commands import RollbackRun, StartRun
from events.run import REOPENING_EVENTS, TERMINAL_EVENTS
from services.store import EventStore
from tests.e2e.conftest import ROOT, playbook_cli
from tests.helpers import local_http, playbook_yaml, wait_for_end

pytestmark = pytest.mark.integration

spec = importlib.util.spec_from_file_location("feed_agent", ROOT / "examples" / "feed_agent.py")
assert spec and spec.loader
feed_agent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(feed_agent)


@pytest.fixture
async def warming_up():
    """Answers 503 twice, then 200."""
    calls: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(1)
        return web.json_response({}, status=503 if len(calls) <= 2 else 200)

    async with local_http([web.get("/api", handler)]) as url:
        yield f"{url}/api"


def retried_then_timed_out_at_its_gate_and_rolled_back(url: str, journal: Path) -> str:
    return playbook_yaml([
        {"id": "call", "action": "http_request", "args": {"url": url}, "timeout_seconds": 5,
         "retry": {"max_attempts": 4, "base_delay": 0.1, "jitter": "none"}},
        {"id": "prepare", "action": "shell", "args": {"command": "echo prepared"}, "timeout_seconds": 5,
         "rollback": [{"action": "shell", "args": {"command": f"echo undone >> {journal}"}, "timeout_seconds": 5}]},
        {"id": "deploy", "action": "noop", "approval_gate": {"required_approvers": ["ops-team"],
                                                             "timeout_seconds": 0.3}},
    ], name="feed", on_failure="rollback")


def changed_then_rolled_back_by_hand(journal: Path) -> str:
    return playbook_yaml([{"id": "change", "action": "shell", "args": {"command": "echo changed"},
                           "timeout_seconds": 5, "rollback": [{"action": "shell", "timeout_seconds": 5, "args": {
                               "command": f"echo undo >> {journal}"}}]}], name="manual")


async def test_a_plain_subscriber_and_a_late_consumer_see_every_event_of_runs_with_retries_deadlines_and_rollbacks(
        engine, warming_up, tmp_path, engine_env) -> None:
    feed = await feed_agent.watch(engine.nc)                     # subscribed before anything starts
    first = await engine.send(StartRun(run_id="retried-gated",
                                       playbook=retried_then_timed_out_at_its_gate_and_rolled_back(
                                           warming_up, tmp_path / "journal")))
    second = await engine.send(StartRun(run_id="by-hand",
                                        playbook=changed_then_rolled_back_by_hand(tmp_path / "journal2")))
    assert first.accepted and second.accepted
    await wait_for_end(engine, "retried-gated")
    await wait_for_end(engine, "by-hand")
    assert (await engine.send(RollbackRun(run_id="by-hand"))).accepted
    await wait_for_end(engine, "by-hand")

    stored = {run: await engine.events(run) for run in ("retried-gated", "by-hand")}
    names = [type(e).__name__ for _, e in stored["retried-gated"]]
    assert names.count("StepScheduled") >= 4 and "ApprovalDeadlinePassed" in names       # fired by schedules
    assert names[-1] == "RollbackCompleted"
    assert [type(e).__name__ for _, e in stored["by-hand"]].count("RollbackCompleted") == 1

    watched = await _read(feed, sum(len(events) for events in stored.values()))
    late = await _read(feed_agent.process(engine.nc, "late-agent"), len(watched), acknowledge=True)
    for run, events in stored.items():
        expected = [(seq, json.loads(encode(event))) for seq, event in events]
        assert [(seq, event) for seq, event in watched if event["run_id"] == run] == expected
        assert [(seq, event) for seq, event in late if event["run_id"] == run] == expected
        printed = playbook_cli("events", run, "--json", env=engine_env)
        assert len(printed.stdout.splitlines()) == len(expected), printed.stderr
    assert [seq for seq, _ in watched] == sorted(seq for seq, _ in watched)              # stream order


async def test_the_example_agent_watches_a_run_live_and_processes_it_afterwards(engine, warming_up, tmp_path,
                                                                                  engine_env) -> None:
    agent = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "feed_agent.py"), "watch", "retried", env=engine_env,
        stdout=asyncio.subprocess.PIPE)
    assert agent.stdout is not None
    try:
        assert json.loads(await asyncio.wait_for(agent.stdout.readline(), 20)) == {"watching": "retried"}
        reply = await engine.send(StartRun(run_id="retried", playbook=(
            retried_then_timed_out_at_its_gate_and_rolled_back(warming_up, tmp_path / "journal"))))
        assert reply.accepted
        out, _ = await asyncio.wait_for(agent.communicate(), 30)
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    watched = [json.loads(line) for line in out.decode().splitlines()]
    stored = await engine.events("retried")
    assert [w["seq"] for w in watched] == [seq for seq, _ in stored]
    processed = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "feed_agent.py"), "process", "auditor", "retried", env=engine_env,
        stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(processed.communicate(), 30)
    assert [json.loads(line)["event"]["type"] for line in out.decode().splitlines()] == [
        type(e).__name__ for _, e in stored]
    consumer = await engine.nc.jetstream().consumer_info(subjects.RUNS_STREAM, "auditor")
    assert consumer.num_ack_pending == 0 and consumer.num_pending == 0          # each event acknowledged, once


def test_the_example_agent_knows_the_contracts_endings_and_what_reopens_a_run() -> None:
    """It knew only RollbackStarted: `process NAME RUN` that read a RunRetried with nothing stored after it yet
    took the run as still ended, and stopped before the retry ran."""
    assert feed_agent.TERMINAL == {e.__name__ for e in TERMINAL_EVENTS}
    assert feed_agent.REOPENING == {e.__name__ for e in REOPENING_EVENTS}


async def test_a_stream_made_before_the_feed_gets_it_when_the_engine_starts(nc) -> None:
    await nc.jetstream().add_stream(name=subjects.RUNS_STREAM, subjects=[subjects.RUN_SUBJECTS])
    await EventStore(nc).ensure_stream()
    info = await nc.jetstream().stream_info(subjects.RUNS_STREAM)
    assert (info.config.republish.src, info.config.republish.dest) == (subjects.RUN_SUBJECTS,
                                                                       subjects.RUN_FEED_SUBJECTS)


async def _read(source, count: int, acknowledge: bool = False, timeout: float = 20) -> list[tuple[int, dict]]:
    """The first `count` events from one of the example agent's iterators, within `timeout` seconds."""
    seen: list[tuple[int, dict]] = []

    async def collect() -> None:
        async for item in source:
            seen.append((item[0], item[1]))
            if acknowledge:
                await item[3].ack()
            if len(seen) == count:
                return
    await asyncio.wait_for(collect(), timeout)
    return seen
