"""`playbook insights` as a user runs it: what the engine learned from a history of runs, and what to change."""
from __future__ import annotations

import asyncio
import json
import time

import nats
import pytest
import yaml

from services.errors import EngineUnavailable
from services.store import EventStore
from events.identity import caller_headers
from tests.e2e.conftest import Processes, playbook_cli, the_local_admin
from tests.learning import DEPLOY, record_history
from ui.insights import LearningClient

pytestmark = pytest.mark.e2e


async def learned_up_to(client: LearningClient, position: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.insights(after=position, wait=timeout)
            return
        except EngineUnavailable:
            assert time.monotonic() < deadline, "the learning service did not start"
            await asyncio.sleep(0.05)


async def test_insights_rebuild_and_the_answer_without_a_learning_service(
        nats_server, engine_env: dict[str, str], processes: Processes, tmp_path) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        store = EventStore(nc)
        await store.ensure_stream()
        last = await record_history(store)
        absent = await asyncio.to_thread(playbook_cli, "insights", env=engine_env)
        assert absent.returncode == 4 and "learning service did not answer" in absent.stderr
        playbook = tmp_path / "deploy.yaml"
        playbook.write_text(yaml.safe_dump({"name": "deploy", "steps": DEPLOY}, sort_keys=False))
        unadvised = await asyncio.to_thread(playbook_cli, "validate", str(playbook), "--insights", env=engine_env)
        assert unadvised.returncode == 0 and "no insights: the learning service did not answer" in unadvised.stderr
        processes.start("learning", ["-m", "services.learning"], engine_env)
        processes.start("identity", ["-m", "services.identity"], engine_env)
        await learned_up_to(LearningClient(nc, caller_headers(await the_local_admin(engine_env))), last)
    finally:
        await nc.close()

    shown = await asyncio.to_thread(playbook_cli, "insights", env=engine_env)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "deploy: 300 runs (180 completed, 120 failed), 60% completed" in out
    assert "-> timeout: step `migrate` has no timeout_seconds (no limit at all)" in out
    assert "timeout_seconds: 6" in out
    assert "-> do_not_retry: step `fetch`: permanent (HTTP 404) never recovered in 300 tries" in out
    assert "target http://db.internal:80: 32 calls, 24 failed, 4 bursts (largest 6)" in out
    assert "nightly/backup + report/query: 4 times within 120 s (http://db.internal:80)" in out

    advised = await asyncio.to_thread(playbook_cli, "validate", str(playbook), "--insights", env=engine_env)
    assert advised.returncode == 0, advised.stderr
    migrate_line = 1 + playbook.read_text().splitlines().index("- id: migrate")
    assert (f"{playbook}:{migrate_line}:3: info PB601 [step migrate] step `migrate` has no timeout_seconds"
            in advised.stdout)
    assert "[step fetch] step `fetch`: permanent (HTTP 404) never recovered in 300 tries" in advised.stdout

    one = await asyncio.to_thread(playbook_cli, "insights", "report", "--json", env=engine_env)
    assert [p["playbook"] for p in json.loads(one.stdout)["playbooks"]] == ["report"]
    unknown = await asyncio.to_thread(playbook_cli, "insights", "never-ran", env=engine_env)
    assert unknown.returncode == 1 and "nothing learned about playbook 'never-ran' yet" in unknown.stderr
    rebuilt = await asyncio.to_thread(playbook_cli, "insights", "rebuild", env=engine_env)
    assert rebuilt.returncode == 0 and f"learned again from the first event: {last} events" in rebuilt.stdout
    again = await asyncio.to_thread(playbook_cli, "insights", env=engine_env)
    assert again.stdout == out
