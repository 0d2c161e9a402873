"""The engine on a 3-node JetStream cluster, its stream at 3 replicas, while servers die under it.

The stream leader is SIGKILLed (a real process, killed for real) while runs are in
flight: every publish that found no leader is asked again with the same Nats-Msg-Id
until the new leader takes it, and afterwards no run is lost or stuck and no step ran
twice. A leader that steps down politely costs at most a retry.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import signal
import subprocess
from pathlib import Path

import nats
import pytest

from events import subjects
from events.commands import StartRun
from events.run import RunCompleted, StepStarted
from app.cluster import login_url
from services.embedded import EmbeddedCluster, free_port
from services.errors import EngineUnavailable
from services.identity.credentials import nats_login
from services.leases import LEASE_STREAM, LEASE_SUBJECTS, LeaseStore
from services.playbook_store import PlaybookStore
from services.settings import Settings
from tests.e2e.conftest import Processes, playbook_cli
from tests.helpers import noop, playbook_yaml, running_engine, until, wait_for_end
from ui.cli import wire as cli_wire
from ui.client import EngineClient

pytestmark = pytest.mark.e2e

RUNS = 100
STEPS = ("prepare", "apply", "verify")


def playbook(effects: Path, gate: Path) -> str:
    """Each step appends `<run> <step>` to the effects file once it has done its work; `apply` waits for the gate."""
    wait = f"while [ ! -e {gate} ]; do sleep 0.05; done; "
    return playbook_yaml([
        {"id": step, "action": "shell", "timeout_seconds": 90, "depends_on": [STEPS[n - 1]] if n else [],
         "args": {"command": f"{wait if step == 'apply' else ''}echo ${{tag}} {step} >> {effects}"}}
        for n, step in enumerate(STEPS)
    ], name="cluster", parameters=[{"name": "tag", "pattern": "^r[0-9]+$"}])


async def stream_leader(client: EngineClient) -> str:
    info = await client.nc.jetstream().stream_info(subjects.RUNS_STREAM)
    assert info.config.num_replicas == 3 and info.cluster is not None
    return str(info.cluster.leader)


async def every_stream_replicated(client: EngineClient) -> None:
    """The runs, the tokens, the refusals and the leases: losing a server must cost none of them."""
    for stream in (subjects.RUNS_STREAM, subjects.IDENTITY_STREAM, subjects.ACCESS_STREAM, LEASE_STREAM):
        assert (await client.nc.jetstream().stream_info(stream)).config.num_replicas == 3, stream


async def start_runs(client: EngineClient, text: str, count: int) -> list[str]:
    replies = await asyncio.gather(*(client.send(StartRun(playbook=text, parameters={"tag": f"r{i}"}))
                                     for i in range(count)))
    assert all(reply.accepted for reply in replies), [reply.error for reply in replies if reply.error][:1]
    return [reply.run_id for reply in replies if reply.run_id]


async def every_run_applying(client: EngineClient, run_ids: list[str]) -> None:
    """Until every run has started its `apply` step (which waits at the gate)."""
    async def applying(run_id: str) -> None:
        async for _, event in client.follow(run_id):
            if isinstance(event, StepStarted) and event.step_id == "apply":
                return
    await asyncio.wait_for(asyncio.gather(*(applying(run_id) for run_id in run_ids)), 60)


async def check_nothing_lost_stuck_or_twice(client: EngineClient, run_ids: list[str], effects: Path) -> None:
    histories = await asyncio.gather(*(wait_for_end(client, run_id, timeout=120) for run_id in run_ids))
    assert [type(h[-1]).__name__ for h in histories] == ["RunCompleted"] * len(run_ids)
    for history in histories:
        starts = collections.Counter((e.step_id, e.attempt) for e in history if isinstance(e, StepStarted))
        assert starts == {(step, 1): 1 for step in STEPS}, history      # each attempt started once, none again
        assert isinstance(history[-1], RunCompleted)
    lines = effects.read_text().splitlines()
    assert len(lines) == len(set(lines)) == len(run_ids) * len(STEPS)   # every side effect once


async def test_sigkill_of_the_stream_leader_during_running_runs_loses_nothing_and_runs_nothing_twice(
        nats_cluster: EmbeddedCluster, cluster_settings: Settings, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    effects, gate = tmp_path / "effects", tmp_path / "gate"
    caplog.set_level(logging.DEBUG, logger="services.jetstream")
    async with running_engine(cluster_settings) as client:
        await every_stream_replicated(client)
        leader = await stream_leader(client)
        run_ids = await start_runs(client, playbook(effects, gate), RUNS)
        await every_run_applying(client, run_ids)

        nats_cluster.kill(leader)                 # no goodbye: its replicas elect another leader
        gate.touch()                              # every run records an outcome, with no leader to take it

        async def new_leader() -> bool:
            try:
                return await stream_leader(client) not in ("", leader)
            except Exception:  # noqa: BLE001 - no leader to answer yet
                return False
        await until(new_leader, timeout=30, what="a new stream leader", every=0.2)
        await check_nothing_lost_stuck_or_twice(client, run_ids, effects)
    asked_again = [r.getMessage() for r in caplog.records if "asking again" in r.getMessage()]
    assert any("appending" in message for message in asked_again), asked_again   # publishes waited out the election


async def test_a_leader_stepping_down_while_outcomes_are_recorded_loses_nothing_and_runs_nothing_twice(
        nats_cluster: EmbeddedCluster, cluster_settings: Settings, tmp_path: Path) -> None:
    effects, gate = tmp_path / "effects", tmp_path / "gate"
    async with running_engine(cluster_settings) as client:
        leader = await stream_leader(client)
        run_ids = await start_runs(client, playbook(effects, gate), RUNS // 4)
        await every_run_applying(client, run_ids)

        gate.touch()
        reply = await client.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{subjects.RUNS_STREAM}", b"", timeout=10)
        assert b'"success":true' in reply.data, reply.data

        await check_nothing_lost_stuck_or_twice(client, run_ids, effects)
        assert await stream_leader(client) != leader


async def test_playbook_up_cluster_3_runs_the_engine_on_three_servers_the_cli_uses_it_and_a_dead_one_comes_back(
        tmp_path: Path, processes: Processes) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env.update(PLAYBOOK_HOME=str(tmp_path / "home"), PLAYBOOK_NATS_PORT=str(free_port()), PYTHONUNBUFFERED="1")
    processes.start("up", ["-m", "ui.cli.main", "up", "--cluster", "3", "--http-port", "0"], env)
    log = next(processes.logs.glob("up-*.log"))
    await until(lambda: "engine ready" in log.read_text(), timeout=60, what="playbook up --cluster 3 ready")
    assert "cluster of 3 servers" in log.read_text() and "streams at 3 replicas" in log.read_text()

    run = await asyncio.to_thread(playbook_cli, "run", "examples/hello.yaml", "-p", "who=cluster", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    listing = await asyncio.to_thread(playbook_cli, "list", "--json", env=env)
    assert [r["status"] for r in json.loads(listing.stdout)] == ["completed"], listing.stderr
    servers = sorted(p.name for p in (tmp_path / "home" / "cluster").iterdir())
    assert servers == ["n1", "n2", "n3"]
    url = (tmp_path / "home" / "nats.url").read_text().strip()
    for server in url.split(","):                            # every server takes only the engine's users
        with pytest.raises(Exception, match="(?i)authorization"):
            await nats.connect(server, allow_reconnect=False, max_reconnect_attempts=0)

    n2 = next(p for p in children_of(processes.started[0].pid) if "nats-n2.conf" in p[1])
    os.kill(n2[0], signal.SIGKILL)                           # `up` starts it again, on its ports and store
    await until(lambda: "nats-server n2 serves again" in log.read_text(), timeout=60, what="n2 started again")
    engine = nats_login("engine", tmp_path / "home")
    assert engine is not None
    nc = await nats.connect(url.split(","), **engine.connect_options())
    try:
        async def every_replica_current() -> bool:
            for stream in (subjects.RUNS_STREAM, subjects.IDENTITY_STREAM):
                try:
                    info = await nc.jetstream().stream_info(stream)
                except Exception:  # noqa: BLE001 - no leader to answer while n2 rejoins
                    return False
                if info.cluster is None or len(info.cluster.replicas or []) != 2 or not all(
                        replica.current for replica in info.cluster.replicas or []):
                    return False
            return True
        await until(every_replica_current, timeout=60, what="n2 a current replica again", every=0.2)
    finally:
        await nc.close()

    async def run_again() -> subprocess.CompletedProcess[str] | None:
        """As an operator would: a token registry that followed n2 follows again, and says `unavailable`
        (exit 4) until it is current."""
        ran = await asyncio.to_thread(playbook_cli, "run", "examples/hello.yaml", "-p", "who=again", env=env)
        assert ran.returncode in (0, 4), ran.stdout + ran.stderr
        return ran if ran.returncode == 0 else None
    await until(run_again, timeout=60, what="a run after n2 came back", every=0.5)


def children_of(parent: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is `parent`, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append((int(entry.name), (entry / "cmdline").read_text().replace("\0", " ")))
        except (OSError, IndexError, ValueError):
            continue                                         # it ended meanwhile
    return found


async def start_as_an_operator_would(client: EngineClient, command: StartRun) -> str:
    """Send the start again while nothing answers: a command sent to a service whose connection is on the frozen
    server is lost until the service leaves it. The run's own id makes asking twice safe: `run_exists` says the
    first one was taken."""
    async def started() -> str | None:
        try:
            reply = await client.send(command, timeout=5)
        except EngineUnavailable:
            return None
        assert reply.accepted or (reply.error is not None and reply.error.code == "run_exists"), reply
        return command.run_id
    run_id: str = await until(started, timeout=60, what="the start taken", every=0.1)
    return run_id


async def test_a_frozen_server_costs_readers_and_runs_a_retry_not_an_error(
        nats_cluster: EmbeddedCluster, cluster_settings: Settings, tmp_path: Path) -> None:
    """A server that stops answering (SIGSTOP: a VM paused, a disk hung) keeps its routes for minutes, and
    any replica may be asked a direct get: every reader asks again and another replica answers, the engine's
    connections leave it, and runs go on."""
    client_login = nats_login("client", nats_cluster.home)
    assert client_login is not None
    env = {**os.environ, "PLAYBOOK_HOME": str(cluster_settings.home), "NATS_URL": login_url(nats_cluster, client_login)}
    async with running_engine(cluster_settings) as client:
        text = playbook_yaml([noop("first"), noop("second", depends_on=["first"])], name="frozen")
        before = (await client.send(StartRun(playbook=text))).run_id
        assert before is not None and isinstance((await wait_for_end(client, before, timeout=60))[-1], RunCompleted)

        frozen = next(s for s in nats_cluster.servers.values() if s.port != client.nc.connected_url.port)
        assert frozen.process is not None
        frozen.process.send_signal(signal.SIGSTOP)
        try:
            during = await start_as_an_operator_would(client, StartRun(playbook=text, run_id="during-the-freeze"))

            async def completed() -> bool:    # read by direct gets: a new consumer may be placed on the frozen one
                return (await client.run(during)).status == "completed"
            await until(completed, timeout=90, what="the run started during the freeze completed", every=0.2)

            def read_plainly() -> None:       # the CLI's own client, many direct gets
                connection = cli_wire.connect(env["NATS_URL"], None, None)
                assert connection is not None
                try:
                    for _ in range(20):
                        assert connection.last(subjects.RUNS_STREAM, subjects.run_all(before)) is not None
                        assert len(connection.stored(subjects.RUNS_STREAM, subjects.run_all(before))) >= 5
                finally:
                    connection.close()
            await asyncio.to_thread(read_plainly)

            for _ in range(12):               # the engine's reads, a fresh reader each time (no cache)
                envelopes, _ = await client.store.load(before)
                assert await PlaybookStore(client.nc).resolved(envelopes)
                assert (await client.store.last_position(subjects.run_all(before)))[0] > 0
                assert await LeaseStore(client.nc).read(f"{LEASE_SUBJECTS[:-1]}none") is None

            status = await asyncio.to_thread(playbook_cli, "status", before, env=env)
            assert status.returncode == 0 and "completed" in status.stdout, status.stdout + status.stderr
        finally:
            frozen.process.send_signal(signal.SIGCONT)
