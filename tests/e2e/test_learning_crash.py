"""The learning service killed with SIGKILL while it learns, then started again: every count equals
what a clean rebuild from the first event finds (nothing counted twice, nothing missed)."""
from __future__ import annotations

import asyncio
import signal
import time

import nats
import pytest

from services.errors import EngineUnavailable
from services.store import EventStore
from events.identity import caller_headers
from tests.e2e.conftest import Processes, the_local_admin
from tests.learning import DEPLOY_RUNS, deploy, learning_env, record, record_history  # noqa: F401 - fixture
from tests.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures
from ui.insights import LearningClient

pytestmark = pytest.mark.e2e

MORE_RUNS_AT_MOST = 4000


async def keep_appending(store: EventStore, killed: asyncio.Event) -> tuple[int, int]:
    """Deploy runs five at a time until the service was killed (so it is killed with more to read, however slowly
    it started); the stream's last sequence and the runs added."""
    last, added = 0, 0
    while not killed.is_set() and added < MORE_RUNS_AT_MOST:
        last = await record(store, [deploy(DEPLOY_RUNS + added + i) for i in range(5)], together=5)
        added += 5
    return last, added


async def status_when_learning(client: LearningClient, timeout: float = 30.0):
    """The service's status once it has written something and has more to read."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "the learning service never got going"
        try:
            status = await client.status(timeout=1)
        except EngineUnavailable:
            status = None
        if status is not None and status.position and status.lag:
            return status
        await asyncio.sleep(0.005)


async def test_sigkill_mid_stream_then_restart_counts_every_event_once(
        nats_server, engine_env, processes: Processes, learning_env: dict[str, str]) -> None:
    env = {**engine_env, **learning_env}
    nc = await nats.connect(nats_server.url)
    processes.start("identity", ["-m", "services.identity"], env)
    client = LearningClient(nc, caller_headers(await the_local_admin(env)))
    try:
        store = EventStore(nc)
        await store.ensure_stream()
        await record_history(store)
        stop = asyncio.Event()
        appending = asyncio.create_task(keep_appending(store, stop))   # the stream grows while it learns
        learner = processes.start("learning", ["-m", "services.learning"], env)
        killed = await status_when_learning(client)
        processes.kill_group(learner)
        assert learner.returncode == -signal.SIGKILL
        stop.set()
        last, added = await appending
        assert 0 < killed.position < last

        processes.start("learning-again", ["-m", "services.learning"], env)
        await until_answering(client)
        incremental = await client.insights(after=last, wait=30)
        rebuilt = await client.rebuild(timeout=120)
        from_scratch = await client.insights()
    finally:
        await nc.close()
    assert rebuilt.position == last and rebuilt.events == last
    assert from_scratch == incremental
    deploy_runs, = (p.runs for p in incremental.playbooks if p.playbook == "deploy")
    assert deploy_runs == DEPLOY_RUNS + added


async def until_answering(client: LearningClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.status(timeout=1)
            return
        except EngineUnavailable:
            assert time.monotonic() < deadline, "the learning service did not come back"
            await asyncio.sleep(0.05)
