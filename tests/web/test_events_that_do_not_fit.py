"""A forged or stray event in a run's stream is quarantined: the run finishes, the API and the CLI's view answer."""
from __future__ import annotations

from datetime import datetime, timezone

import aiohttp
import pytest

from events import subjects
from events.codec import encode
from events.commands import ApproveStep, StartRun
from events.identity import caller_headers
from events.run import ApprovalRequested, RunCompleted, StepStarted, Unreadable
from tests.helpers import noop, person, playbook_yaml, until_event, wait_for_end
from ui.cli.render import status_table

pytestmark = pytest.mark.integration


async def test_a_start_of_an_unknown_step_is_quarantined_and_the_run_still_finishes(engine, web_server) -> None:
    text = playbook_yaml([noop("prepare"), noop("deploy", approval_gate={"required_approvers": ["bob"]})])
    run_id = (await engine.send(StartRun(playbook=text))).run_id
    async for _, event in engine.follow(run_id):
        if isinstance(event, ApprovalRequested):
            break
    stray = StepStarted(run_id=run_id, at=datetime.now(timezone.utc), step_id="ghost", attempt=1, executor="nobody")
    ack = await engine.nc.jetstream().publish(subjects.run_event(run_id, "StepStarted"), encode(stray))

    bob = await person(engine, "bob")
    reply = await bob.send(ApproveStep(run_id=run_id, step_id="deploy"))
    assert reply.accepted, reply.error
    events = await wait_for_end(engine, run_id)
    assert isinstance(events[-1], RunCompleted)

    url, headers = f"{web_server.url}/api/runs/{run_id}", caller_headers(engine.caller.credential)
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        assert response.status == 200
        view = await response.json()
    assert view["status"] == "completed"
    assert view["quarantined"] == [{"seq": ack.seq, "event": "StepStarted", "step_id": "ghost",
                                    "reason": "the playbook has no step 'ghost'"}]
    [line] = [e for e in view["timeline"] if e["seq"] == ack.seq]
    assert line["detail"] == "quarantined, not applied: the playbook has no step 'ghost'"
    assert "not applied: the playbook has no step 'ghost'" in status_table(await engine.run(run_id))


async def test_an_event_this_version_cannot_read_is_shown_quarantined_and_the_run_still_finishes(
        engine, web_server) -> None:
    """A newer engine's event type (a downgrade, or a hand-made publish) was skipped by every reader, unseen:
    status, replay, the dashboard and `playbook events` (the raw stream for audits) showed a run without it."""
    text = playbook_yaml([noop("prepare"), noop("deploy", approval_gate={"required_approvers": ["bob"]})])
    run_id = (await engine.send(StartRun(playbook=text))).run_id
    await until_event(engine, run_id, ApprovalRequested)
    newer = b'{"type": "StepFrobnicated", "run_id": "%s", "at": "2026-12-01T23:30:00Z"}' % run_id.encode()
    ack = await engine.nc.jetstream().publish(subjects.run_event(run_id, "StepFrobnicated"), newer)

    bob = await person(engine, "bob")
    assert (await bob.send(ApproveStep(run_id=run_id, step_id="deploy"))).accepted
    events = await wait_for_end(engine, run_id)
    assert isinstance(events[-1], RunCompleted)
    assert [e.stored_type for e in events if isinstance(e, Unreadable)] == ["StepFrobnicated"]

    reason = "this version of the engine cannot read it: Invalid value 'StepFrobnicated' - at `$.type`"
    url, headers = f"{web_server.url}/api/runs/{run_id}", caller_headers(engine.caller.credential)
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        view = await response.json()
    assert (view["status"], view["quarantined"]) == (
        "completed", [{"seq": ack.seq, "event": "StepFrobnicated", "step_id": None, "reason": reason}])
    [line] = [e for e in view["timeline"] if e["seq"] == ack.seq]
    assert line["detail"] == f"quarantined, not applied: {reason}"
    assert f"quarantined event {ack.seq} (StepFrobnicated), not applied: {reason}" in status_table(
        await engine.run(run_id))


async def test_a_run_whose_start_this_version_cannot_read_is_said_so_not_a_server_error(engine, web_server) -> None:
    """A newer engine's RunStarted (a playbook key this version does not know): GET /api/runs/{id} answered 500."""
    newer = (b'{"type": "RunStarted", "run_id": "newer", "at": "2026-12-01T23:30:00Z", "actor": "root", '
             b'"playbook": {"name": "nk", "priority": 5, "steps": [{"id": "s", "action": "noop"}]}, '
             b'"plan": {"needs": {"s": []}}}')
    await engine.nc.jetstream().publish(subjects.run_event("newer", "RunStarted"), newer)
    headers = caller_headers(engine.caller.credential)
    async with aiohttp.ClientSession() as http, http.get(f"{web_server.url}/api/runs/newer", headers=headers) as answer:
        assert answer.status == 409
        error = (await answer.json())["error"]
    assert error["code"] == "unreadable_run"
    assert error["message"].startswith("run 'newer' is stored, but this version of the engine cannot read its start: "
                                       "Object contains unknown field `priority`")
