"""A full store, for real: JetStream given a few megabytes and filled up while runs are in flight.

While full, starting a run is answered "unavailable" (exit 4, HTTP 503) with the reason,
/readyz says not ready and why, and the running steps' outcomes wait in their executor.
Once space returns, every run goes on to its end or is cancelled: none lost, none stuck,
no attempt run twice.
"""
from __future__ import annotations

import asyncio
import collections
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from nats.js.errors import APIError

from events.commands import CancelRun, StartRun
from events.identity import caller_headers
from events.run import RunCancelled, RunCompleted, StepStarted, StepSucceeded
from services.settings import ACCESS_MAX_BYTES, LOGS_MAX_BYTES, UPLOADS_MAX_BYTES
from tests.conftest import NatsServer
from tests.helpers import playbook_yaml, running_engine, until, wait_for_end

pytestmark = pytest.mark.integration

RUNS = 24
# The reservations (refusal records, staged uploads, output lines) and a few MB for the runs.
STORE_BYTES = ACCESS_MAX_BYTES + UPLOADS_MAX_BYTES + LOGS_MAX_BYTES + 6 * 2**20
FILLER = "FILLER"


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """This module's server has a JetStream store a few megabytes over what the engine reserves: enough for the
    runs, not for the filler."""
    server = NatsServer(tmp_path / "jetstream", max_file_store=STORE_BYTES)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


async def fill_the_store(engine) -> None:
    """Another stream takes every byte left, as a busy neighbour on the same server would."""
    js = engine.nc.jetstream()
    await js.add_stream(name=FILLER, subjects=["filler.>"])
    block = b"x" * 1000 * 1024
    for _ in range(2 * STORE_BYTES // len(block)):
        try:
            await js.publish("filler.block", block)
        except APIError as err:
            assert err.err_code == 10023, err      # insufficient resources: full
            return
    raise AssertionError("the store never filled up")


async def readiness(web_server) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(f"{web_server.url}/readyz") as response:
        return response.status, await response.json()


async def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """The CLI's exit code and what it said on stderr."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "ui.cli.main", *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, err.decode()


async def test_a_full_store_answers_unavailable_and_once_space_returns_every_run_ends_or_is_cancelled(
        engine, web_server, nats_server, tmp_path: Path) -> None:
    gate, effects = tmp_path / "gate", tmp_path / "effects"
    text = playbook_yaml([
        {"id": "work", "action": "shell", "timeout_seconds": 120, "args": {"command": (
            f"while [ ! -e {gate} ]; do sleep 0.05; done; echo ${{tag}} work >> {effects}")}},
        {"id": "report", "action": "noop", "depends_on": ["work"]},
    ], name="full-store", parameters=[{"name": "tag", "pattern": "^r[0-9]+$"}])
    replies = await asyncio.gather(*(engine.send(StartRun(playbook=text, parameters={"tag": f"r{i}"}))
                                     for i in range(RUNS)))
    run_ids = [reply.run_id for reply in replies]
    assert all(reply.accepted for reply in replies), [r.error for r in replies if r.error][:1]
    for run_id in run_ids:            # every run's first step is running before the store fills
        async for _, event in engine.follow(run_id):
            if isinstance(event, StepStarted):
                break

    await fill_the_store(engine)

    refused = await engine.send(StartRun(playbook=text, parameters={"tag": "r999"}))
    assert not refused.accepted and refused.error.code == "unavailable", refused
    assert "full" in refused.error.message
    async with aiohttp.ClientSession(headers=caller_headers(engine.caller.credential)) as http:
        async with http.post(f"{web_server.url}/api/runs", json={"playbook": text, "parameters": {"tag": "r999"}}) \
                as response:
            assert response.status == 503
            assert (await response.json())["error"]["code"] == "engine_unavailable"
    env = {**os.environ, "NATS_URL": nats_server.url, "PLAYBOOK_HOME": str(tmp_path / "cli"),
           "PLAYBOOK_TOKEN": engine.caller.credential}
    path = tmp_path / "p.yaml"
    path.write_text(text)
    code, err = await cli(env, "run", str(path), "-p", "tag=r999")
    assert code == 4 and "full" in err and "Traceback" not in err
    status, ready = await readiness(web_server)
    assert status == 503 and not ready["ready"] and any("full" in reason for reason in ready["reasons"]), ready

    gate.touch()                      # the steps finish while nothing can be recorded
    await until(lambda: effects.exists() and len(effects.read_text().splitlines()) == RUNS, timeout=30,
                what="every step done")
    cancelled = run_ids[: RUNS // 2]
    answers = await asyncio.gather(*(engine.send(CancelRun(run_id=run_id)) for run_id in cancelled))
    assert {answer.error.code for answer in answers if answer.error} <= {"unavailable"}

    await engine.nc.jetstream().delete_stream(FILLER)    # space returns

    async def ready_again() -> bool:
        return (await readiness(web_server))[0] == 200
    await until(ready_again, timeout=15, what="/readyz ready again")
    for run_id in cancelled:          # asked again now that it can be recorded: already ended, or cancelled
        answer = await engine.send(CancelRun(run_id=run_id))
        assert answer.accepted or answer.error.code == "illegal_transition", answer
    histories = await asyncio.gather(*(wait_for_end(engine, run_id, timeout=60) for run_id in run_ids))

    endings = collections.Counter(type(history[-1]).__name__ for history in histories)
    assert set(endings) <= {"RunCompleted", "RunCancelled"} and sum(endings.values()) == RUNS, endings
    assert all(isinstance(h[-1], RunCompleted) for h, r in zip(histories, run_ids) if r not in cancelled)
    for history in histories:
        starts = collections.Counter((e.step_id, e.attempt) for e in history if isinstance(e, StepStarted))
        assert set(starts.values()) == {1}, history           # no attempt started twice
        succeeded = [e for e in history if isinstance(e, StepSucceeded) and e.step_id == "work"]
        assert len(succeeded) == 1 or isinstance(history[-1], RunCancelled)
    lines = effects.read_text().splitlines()
    assert len(lines) == len(set(lines)) == RUNS, lines          # each run's work done once


async def test_a_step_that_finished_while_its_lease_lapsed_in_a_full_store_is_recorded_not_run_again(
        settings, nats_server, tmp_path: Path, caplog) -> None:
    """Its outcome waited for space longer than its lease: it was dropped when the lease lapsed, the takeover
    recorded the attempt interrupted, and the step that had finished ran again. It is kept and recorded now."""
    gate, effects = tmp_path / "gate", tmp_path / "effects"
    text = playbook_yaml([{"id": "work", "action": "shell", "timeout_seconds": 120, "args": {"command": (
        f"while [ ! -e {gate} ]; do sleep 0.05; done; echo work >> {effects}")}}], name="lapsed")
    async with running_engine(replace(settings, lease_seconds=3.0)) as engine:
        run_id = (await engine.send(StartRun(playbook=text))).run_id
        async for _, event in engine.follow(run_id):
            if isinstance(event, StepStarted):
                break
        await fill_the_store(engine)
        gate.touch()                                     # it finishes while nothing can be recorded
        await until(lambda: "lost the lease" in caplog.text, timeout=30, what="the lease lapsed meanwhile")
        await engine.nc.jetstream().delete_stream(FILLER)
        history = await wait_for_end(engine, run_id, timeout=60)
    assert isinstance(history[-1], RunCompleted), history[-1]
    assert [(type(e).__name__, e.attempt) for e in history if isinstance(e, (StepStarted, StepSucceeded))] == [
        ("StepStarted", 1), ("StepSucceeded", 1)]
    assert effects.read_text().splitlines() == ["work"]          # done once
