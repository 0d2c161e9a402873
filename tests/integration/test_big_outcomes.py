"""Outcomes bigger than a NATS message are stored capped with a note; runs with them end, and can be cancelled."""
from __future__ import annotations

import pytest
from aiohttp import web

from events.commands import CancelRun, StartRun
from events.run import RunCancelled, RunCompleted, StepFailed, StepStarted, StepSucceeded
from services.errors import TooLarge
from services.store import EventStore
from tests.helpers import local_http, noop, playbook_yaml, started, until, wait_for_end

pytestmark = pytest.mark.integration

TWO_MB = 2 * 1024 * 1024


async def test_an_http_body_of_two_megabytes_is_stored_capped_with_a_note(engine) -> None:
    async def big(_request: web.Request) -> web.Response:
        return web.Response(text="a" * TWO_MB)

    async with local_http([web.get("/big", big)]) as base:
        text = playbook_yaml([{"id": "fetch", "action": "http_request", "timeout_seconds": 20,
                               "args": {"url": f"{base}/big", "max_body_bytes": 4 * TWO_MB}}, noop("after")])
        run_id = (await engine.send(StartRun(playbook=text))).run_id
        events = await wait_for_end(engine, run_id)
    assert isinstance(events[-1], RunCompleted)
    [fetched] = [e for e in events if isinstance(e, StepSucceeded) and e.step_id == "fetch"]
    assert fetched.outputs["status_code"] == 200
    assert fetched.outputs["body"].startswith("aaaa") and "bytes cut to fit the event store]" in fetched.outputs["body"]
    assert fetched.note.startswith("outputs cut by ")
    assert (await engine.run(run_id)).steps["fetch"].attempt.note == fetched.note


async def test_a_shell_step_keeping_megabytes_of_output_fails_recorded_not_for_ever(engine) -> None:
    text = playbook_yaml([{"id": "loud", "action": "shell", "timeout_seconds": 20,
                           "args": {"command": "head -c 3000000 /dev/zero | tr '\\0' x; exit 3",
                                    "max_output_bytes": 5_000_000}}])
    run_id = (await engine.send(StartRun(playbook=text))).run_id
    events = await wait_for_end(engine, run_id)
    [failed] = [e for e in events if isinstance(e, StepFailed)]
    assert failed.error.startswith("command exited with code 3") and "cut by" in failed.note
    assert len(failed.outputs["stdout"]) < 1024 * 1024


async def test_cancel_ends_a_run_whose_running_step_holds_an_outcome_too_big_to_store(engine, tmp_path) -> None:
    started_file = tmp_path / "printed"
    text = playbook_yaml([{"id": "loud", "action": "shell", "timeout_seconds": 60,
                           "args": {"command": f"head -c 3000000 /dev/zero | tr '\\0' x; touch {started_file}; "
                                               "sleep 60", "max_output_bytes": 5_000_000}}])
    run_id = (await engine.send(StartRun(playbook=text))).run_id
    async for _, event in engine.follow(run_id):
        if isinstance(event, StepStarted):
            break
    await until(started_file.exists, timeout=20, what="the step printed its three megabytes")
    assert (await engine.send(CancelRun(run_id=run_id))).accepted
    events = await wait_for_end(engine, run_id)
    assert isinstance(events[-1], RunCancelled)
    [failed] = [e for e in events if isinstance(e, StepFailed)]
    assert failed.category == "cancelled"


async def test_the_store_refuses_an_event_too_big_for_one_message_and_stays_connected(nc) -> None:
    store = EventStore(nc)
    await store.ensure_stream()
    opening = started("r1", [noop("a")])
    too_big = opening.__class__(**{**{f: getattr(opening, f) for f in opening.__struct_fields__},
                                   "parameters": {"blob": "x" * TWO_MB}})
    with pytest.raises(TooLarge, match="NATS carries at most"):
        await store.append("r1", [too_big], expected=0)
    assert await store.append("r1", [opening], expected=0)
