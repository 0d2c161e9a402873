"""At most one live execution of an attempt, with real processes killed for real: an executor SIGKILLed,
stopped, or cut off from NATS; the NATS server itself killed and restarted."""
from __future__ import annotations

import asyncio
import collections
import signal
import time
from dataclasses import replace
from pathlib import Path

import nats
import pytest

from events.commands import CancelRun, StartRun
from events.run import RunCancelled, RunCompleted, RunEvent, StepFailed, StepStarted
from tests.e2e.conftest import Processes, the_local_admin
from tests.e2e.test_crash_and_scale import send_when_ready
from tests.helpers import playbook_yaml, running_engine, until, wait_for_end
from ui.client import EngineClient

pytestmark = pytest.mark.e2e
GUARDIAN_MOMENT = 0.25     # seconds: at most between an executor's death and its guardian's kill, on a loaded machine


def side_effects(log: Path, steps: int, seconds: float) -> str:
    """A playbook whose every attempt writes `<its key> start <time>` and, `seconds` later, `... end <time>`."""
    command = (f'echo "$PLAYBOOK_IDEMPOTENCY_KEY start $(date +%s.%N)" >> {log}; sleep {seconds}; '
               f'echo "$PLAYBOOK_IDEMPOTENCY_KEY end $(date +%s.%N)" >> {log}')
    return playbook_yaml([{"id": f"s{i}", "action": "shell", "timeout_seconds": 120, "args": {"command": command}}
                          for i in range(steps)])


def lines(log: Path) -> list[tuple[str, str, float]]:
    return [(key, what, float(at)) for key, what, at in (line.split() for line in log.read_text().splitlines())]


def starts(history: list[RunEvent]) -> collections.Counter[tuple[str, int]]:
    return collections.Counter((e.step_id, e.attempt) for e in history if isinstance(e, StepStarted))


async def services(processes: Processes, env: dict[str, str], executors: int = 2) -> list:
    processes.start("run", ["-m", "services.run"], env)
    processes.start("identity", ["-m", "services.identity"], env)
    started = [processes.start("executor", ["-m", "services.executor"], env) for _ in range(executors)]

    def ready() -> bool:
        return sum("ready (lease" in p.read_text() for p in processes.logs.glob("executor-*.log")) == executors
    await until(ready, timeout=30, what="the executors ready")
    return started


async def running_on(client: EngineClient, run_ids: list[str], wanted: int) -> dict[str, tuple[str, str, int]]:
    """Until `wanted` attempts run at once; run -> (executor, step, attempt) of its running attempt."""
    async def now_running() -> dict[str, tuple[str, str, int]]:
        found = {}
        for run_id in run_ids:
            run = await client.run(run_id)
            for step in run.steps.values():
                if step.status == "running":
                    found[run_id] = (step.attempt.executor or "", step.id, step.attempt.number)
        return found if len(found) >= wanted else {}
    return await until(now_running, timeout=30, what=f"{wanted} attempts running", every=0.1)


async def test_a_sigkilled_executor_is_taken_over_when_its_lease_lapses_and_nothing_of_it_runs_on(
        processes: Processes, engine_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    # Redelivery after the ack wait would take an hour: only the lease can bring the attempts back.
    env = {**engine_env, "PLAYBOOK_LEASE_SECONDS": "2", "PLAYBOOK_ACK_WAIT": "3600"}
    executors = await services(processes, env)
    log = tmp_path / "effects"
    nc = await nats.connect(nats_server.url)
    client = EngineClient(nc, await the_local_admin(env))
    try:
        first = await send_when_ready(client, StartRun(playbook=side_effects(log, 3, 1.0)))
        others = [await client.send(StartRun(playbook=side_effects(log, 3, 1.0))) for _ in range(5)]
        run_ids = [first.run_id, *(r.run_id for r in others)]
        running = await running_on(client, run_ids, 6)
        victim = max(executors, key=lambda p: sum(e.endswith(f"-{p.pid}") for e, _, _ in running.values()))
        cancelled = next(r for r, (e, _, _) in running.items() if e.endswith(f"-{victim.pid}"))
        killed_at = time.time()
        victim.send_signal(signal.SIGKILL)
        assert (await client.send(CancelRun(run_id=cancelled))).accepted
        histories = dict(zip(run_ids, await asyncio.gather(*(wait_for_end(client, r, 60) for r in run_ids))))
    finally:
        await nc.close()

    ended = histories.pop(cancelled)
    assert isinstance(ended[-1], RunCancelled)   # cancel ends it, its executor dead or not
    assert all(isinstance(h[-1], RunCompleted) for h in histories.values())
    interrupted = [e for h in [*histories.values(), ended] for e in h if isinstance(e, StepFailed)]
    assert interrupted and all(e.category == "interrupted" and "stopped renewing its lease" in e.error
                               for e in interrupted)
    for history in [*histories.values(), ended]:
        assert set(starts(history).values()) == {1}                  # no attempt started twice
    effects = lines(log)
    assert len({(key, what) for key, what, _ in effects}) == len(effects), "an attempt wrote twice"
    victim_name = next(e for e, _, _ in running.values() if e.endswith(f"-{victim.pid}"))
    victims = {f"{e.run_id}/{e.step_id}/{e.attempt}" for h in [*histories.values(), ended] for e in h
               if isinstance(e, StepStarted) and e.executor == victim_name}
    # Its guardian acts at once (a loaded machine may delay it by moments), long before the lease (2 s) lapses.
    after_kill = [(key, what) for key, what, at in effects if key in victims and at > killed_at + GUARDIAN_MOMENT]
    assert not after_kill, f"the killed executor's steps ran on: {after_kill}"


async def test_a_stopped_executor_hands_its_attempts_over_at_once(
        processes: Processes, engine_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    env = {**engine_env, "PLAYBOOK_LEASE_SECONDS": "30", "PLAYBOOK_ACK_WAIT": "3600"}
    executors = await services(processes, env)
    log = tmp_path / "effects"
    nc = await nats.connect(nats_server.url)
    client = EngineClient(nc, await the_local_admin(env))
    try:
        reply = await send_when_ready(client, StartRun(playbook=side_effects(log, 1, 60)))
        [(holder, _, _)] = (await running_on(client, [reply.run_id], 1)).values()
        victim = next(p for p in executors if holder.endswith(f"-{p.pid}"))
        victim.send_signal(signal.SIGTERM)   # a stop; with its grace over, the attempt is handed over
        async for _, event in client.follow(reply.run_id):
            if isinstance(event, StepFailed):
                break
        await client.send(CancelRun(run_id=reply.run_id))
        await wait_for_end(client, reply.run_id, 30)
    finally:
        await nc.close()
    assert event.category == "interrupted" and event.error == f"executor {holder} stopped while running it"


async def test_a_nats_server_restarted_mid_step_interrupts_nothing_and_runs_nothing_twice(
        processes: Processes, engine_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    # A short ack wait, as when the restart used to make live attempts look abandoned.
    env = {**engine_env, "PLAYBOOK_LEASE_SECONDS": "8", "PLAYBOOK_ACK_WAIT": "1"}
    await services(processes, env)
    log = tmp_path / "effects"
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    client = EngineClient(nc, await the_local_admin(env))
    try:
        first = await send_when_ready(client, StartRun(playbook=side_effects(log, 2, 3.0)))
        others = [await client.send(StartRun(playbook=side_effects(log, 2, 3.0))) for _ in range(3)]
        run_ids = [first.run_id, *(r.run_id for r in others)]
        await running_on(client, run_ids, 4)
        nats_server.process.send_signal(signal.SIGKILL)
        nats_server.process.wait()
        await nats_server.start()
        histories = await asyncio.gather(*(wait_for_end(client, r, 60) for r in run_ids))
    finally:
        await nc.close()
    assert all(isinstance(h[-1], RunCompleted) for h in histories)
    assert not [e for h in histories for e in h if isinstance(e, StepFailed)]
    assert all(set(starts(h).values()) == {1} for h in histories)
    effects = lines(log)
    assert sorted(collections.Counter((key, what) for key, what, _ in effects).values()) == [1] * 16


async def test_an_executor_cut_off_from_nats_stops_its_step_before_its_lease_can_be_taken(
        nats_server, settings, tmp_path: Path) -> None:
    pid_file, ran = tmp_path / "pid", tmp_path / "ran-once"
    text = playbook_yaml([{"id": "long", "action": "shell", "timeout_seconds": 600, "args": {
        "command": f"[ -e {ran} ] && exit 0; touch {ran}; echo $$ > {pid_file}; exec sleep 600"}}])
    async with running_engine(replace(settings, lease_seconds=2)) as engine:
        reply = await engine.send(StartRun(playbook=text))
        pid = int(await until(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the step running"))
        nats_server.process.send_signal(signal.SIGKILL)
        nats_server.process.wait()
        # No renewal can be confirmed: the executor stops the step while NATS is still down.
        await until(lambda: not _alive(pid), timeout=10, what="the step stopped")
        await nats_server.start()
        events = await wait_for_end(engine, reply.run_id, 60)
    assert isinstance(events[-1], RunCompleted)
    [interrupted] = [e for e in events if isinstance(e, StepFailed)]
    assert interrupted.category == "interrupted" and interrupted.attempt == 1
    assert starts(events) == {("long", 1): 1, ("long", 2): 1}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

