"""Crash safety and scale-out, with real processes killed for real."""
from __future__ import annotations

import asyncio
import collections
import os
import signal
from pathlib import Path

import nats
import pytest

from events.commands import StartRun
from events.run import RunCompleted, StepFailed, StepStarted
from services.embedded import free_port, greets
from services.identity.credentials import nats_login
from tests.e2e.conftest import Processes, the_local_admin
from tests.helpers import playbook_yaml, until, wait_for_end
from ui.client import EngineClient, EngineUnavailable

pytestmark = pytest.mark.e2e


async def send_when_ready(client: EngineClient, command: StartRun, timeout: float = 20.0):
    """The command's reply, once the engine answers at all (it may still be starting)."""
    async def answered():
        try:
            return await client.send(command, timeout=2)
        except EngineUnavailable:
            return None
    return await until(answered, timeout=timeout, what="the engine answering", every=0.1)


async def test_sigkill_of_the_whole_engine_mid_run_then_restart_finishes_the_run(tmp_path: Path,
                                                                                 processes: Processes) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env.update(PLAYBOOK_HOME=str(tmp_path / "home"), PLAYBOOK_NATS_PORT=str(port), PLAYBOOK_ACK_WAIT="2",
               PYTHONUNBUFFERED="1")
    marker, gate = tmp_path / "marker", tmp_path / "gate"
    text = playbook_yaml([
        {"id": "first", "action": "shell", "args": {"command": f"echo first >> {marker}"}, "timeout_seconds": 10},
        {"id": "second", "action": "shell", "timeout_seconds": 60,
         "args": {"command": f"echo second >> {marker}; while [ ! -e {gate} ]; do sleep 0.05; done"}},
        {"id": "third", "action": "shell", "args": {"command": f"echo third >> {marker}"}, "timeout_seconds": 10},
    ])
    up = processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], env)
    await until(lambda: asyncio.to_thread(greets, port), timeout=20, what="embedded nats-server up")
    login = nats_login("client", tmp_path / "home")          # the CLI's, which `up` made
    assert login is not None
    nc = await nats.connect(f"nats://127.0.0.1:{port}", max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                            **login.connect_options())
    client = EngineClient(nc, await the_local_admin(env))
    try:
        reply = await send_when_ready(client, StartRun(playbook=text))
        run_id = reply.run_id
        async for _, event in client.follow(run_id):
            if isinstance(event, StepStarted) and event.step_id == "second":
                break
        await until(lambda: marker.exists() and "second" in marker.read_text(), timeout=20, what="second step running")

        processes.kill_group(up)          # the engine and its nats-server, mid-step, no goodbye
        gate.touch()                      # the re-run of `second` may finish
        processes.start("up-again", ["-m", "ui.cli.main", "up", "--http-port", "0"], env)
        await until(lambda: asyncio.to_thread(greets, port), timeout=20, what="embedded nats-server back")

        events = await wait_for_end(client, run_id, timeout=60)
    finally:
        await nc.close()
    assert isinstance(events[-1], RunCompleted)
    assert marker.read_text().split() == ["first", "second", "second", "third"]
    started = collections.Counter(e.step_id for e in events if isinstance(e, StepStarted))
    assert started == {"first": 1, "second": 2, "third": 1}   # nothing that succeeded ran again
    interrupted = [e for e in events if isinstance(e, StepFailed)]
    assert [(e.step_id, e.category) for e in interrupted] == [("second", "interrupted")]


def children_named(pid: int, name: str) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children if Path(f"/proc/{child}/comm").read_text().strip() == name]


async def test_the_embedded_nats_server_killed_mid_step_is_started_again_and_the_run_finishes(
        tmp_path: Path, processes: Processes) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env.update(PLAYBOOK_HOME=str(tmp_path / "home"), PLAYBOOK_NATS_PORT=str(port), PYTHONUNBUFFERED="1")
    marker, gate = tmp_path / "marker", tmp_path / "gate"
    text = playbook_yaml([
        {"id": "waits", "action": "shell", "timeout_seconds": 60,
         "args": {"command": f"echo waits >> {marker}; while [ ! -e {gate} ]; do sleep 0.05; done"}},
        {"id": "after", "action": "shell", "args": {"command": f"echo after >> {marker}"}, "timeout_seconds": 10},
    ])
    up = processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], env)
    log = next(processes.logs.glob("up-*.log"))
    await until(lambda: "engine ready" in log.read_text(), timeout=30, what="engine ready")
    login = nats_login("client", tmp_path / "home")
    assert login is not None
    nc = await nats.connect(f"nats://127.0.0.1:{port}", max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                            **login.connect_options())
    client = EngineClient(nc, await the_local_admin(env))
    try:
        run_id = (await send_when_ready(client, StartRun(playbook=text))).run_id
        await until(lambda: marker.exists() and "waits" in marker.read_text(), timeout=20, what="a step running")
        server, = children_named(up.pid, "nats-server")
        os.kill(server, signal.SIGKILL)   # the server alone dies; `up` and its step go on

        await until(lambda: [pid for pid in children_named(up.pid, "nats-server") if pid != server],
                    timeout=20, what="a new nats-server started by `up`")
        await until(lambda: asyncio.to_thread(greets, port), timeout=20, what="the same port answering again")
        gate.touch()
        events = await wait_for_end(client, run_id, timeout=60)
    finally:
        await nc.close()
    assert isinstance(events[-1], RunCompleted)
    starts = collections.Counter((e.step_id, e.attempt) for e in events if isinstance(e, StepStarted))
    assert set(starts.values()) == {1} and marker.read_text().split()[-1] == "after"
    assert "the embedded nats-server exited (code -9); starting it again" in log.read_text()
    assert up.poll() is None


async def test_two_executor_processes_finish_fifty_concurrent_runs_each_attempt_started_once(
        nats_server, engine_env: dict[str, str], processes: Processes) -> None:
    logs = processes.logs
    processes.start("run", ["-m", "services.run"], engine_env)
    processes.start("identity", ["-m", "services.identity"], engine_env)
    for _ in range(2):
        processes.start("executor", ["-m", "services.executor"], engine_env)

    def both_executors_ready() -> bool:
        return sum("executor" in p.name and "ready" in p.read_text() for p in logs.iterdir()) == 2

    await until(both_executors_ready, timeout=20, what="two executors ready")
    text = playbook_yaml([
        {"id": "check_a", "parallel_group": "checks", "action": "shell", "args": {"command": "sleep 0.05"},
         "timeout_seconds": 10},
        {"id": "check_b", "parallel_group": "checks", "action": "shell", "args": {"command": "sleep 0.05"},
         "timeout_seconds": 10},
        {"id": "apply", "action": "shell", "args": {"command": "true"}, "timeout_seconds": 10},
        {"id": "report", "action": "noop"},
    ])
    nc = await nats.connect(nats_server.url)
    client = EngineClient(nc, await the_local_admin(engine_env))
    try:
        first = await send_when_ready(client, StartRun(playbook=text))
        others = await asyncio.gather(*(client.send(StartRun(playbook=text)) for _ in range(49)))
        run_ids = [first.run_id] + [r.run_id for r in others]
        histories = await asyncio.gather(*(wait_for_end(client, run_id, timeout=90) for run_id in run_ids))
    finally:
        await nc.close()
    assert all(isinstance(h[-1], RunCompleted) for h in histories)
    executors = set()
    for history in histories:
        starts = collections.Counter((e.step_id, e.attempt) for e in history if isinstance(e, StepStarted))
        assert set(starts.values()) == {1}
        assert len(starts) == 4, [(type(e).__name__, getattr(e, "step_id", ""), getattr(e, "error",
                                                                                        "")) for e in history]
        executors |= {e.executor for e in history if isinstance(e, StepStarted)}
    assert len(executors) == 2, f"work was not shared: {executors}"


async def test_ctrl_c_stops_playbook_up_cleanly_with_its_nats_server(tmp_path: Path, processes: Processes) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env.update(PLAYBOOK_HOME=str(tmp_path / "home"), PLAYBOOK_NATS_PORT=str(port), PYTHONUNBUFFERED="1")
    up = processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], env)
    log = next(processes.logs.glob("up-*.log"))
    await until(lambda: "engine ready" in log.read_text(), timeout=20, what="engine ready")
    os.killpg(up.pid, signal.SIGINT)     # as a terminal's Ctrl-C: to `up` and its nats-server alike
    assert await asyncio.to_thread(up.wait, 15) == 0
    assert not greets(port), "the embedded nats-server outlived `playbook up`"
    assert "stopping" in log.read_text() and "starting it again" not in log.read_text()
    assert not (tmp_path / "home" / "nats.url").exists()
