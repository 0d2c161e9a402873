"""What `playbook status` says of a run that waits: for its next attempt, for a gate, paused; and until when."""
from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from events.commands import CancelRun, PauseRun, StartRun
from events.run import ApprovalRequested, RunPaused, StepRetryScheduled, StepStarted
from tests.helpers import playbook_yaml, until_event, wait_for_end
from ui.cli.render import status_table

pytestmark = pytest.mark.integration

FAILING = {"id": "flaky", "action": "shell", "args": {"command": "exit 1"}, "timeout_seconds": 5,
           "retry": {"max_attempts": 3, "base_delay": 600, "jitter": "none", "retry_on_errors": ["unknown"]}}
SLOW = {"id": "nap", "action": "shell", "args": {"command": "sleep 60"}, "timeout_seconds": 90}
GATED = {"id": "deploy", "action": "shell", "args": {"command": "true"}, "timeout_seconds": 5,
         "approval_gate": {"timeout_seconds": 900}}


async def test_a_step_waiting_for_its_retry_says_which_attempt_comes_and_when(engine) -> None:
    reply = await engine.send(StartRun(playbook=playbook_yaml([FAILING])))
    retry = await until_event(engine, reply.run_id, StepRetryScheduled)
    table = status_table(await engine.run(reply.run_id))
    assert f"attempt 2 at {retry.due.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}Z" in table, table


async def test_a_gate_says_until_when_it_waits_and_a_paused_run_who_paused_it(engine) -> None:
    reply = await engine.send(StartRun(playbook=playbook_yaml([GATED])))
    asked = await until_event(engine, reply.run_id, ApprovalRequested)
    assert asked.deadline is not None
    await engine.send(PauseRun(run_id=reply.run_id, reason="change freeze"))
    await until_event(engine, reply.run_id, RunPaused)
    table = status_table(await engine.run(reply.run_id))
    assert f"waits until {asked.deadline:%Y-%m-%d %H:%M:%S}Z" in table, table
    assert "paused by " in table and ": change freeze" in table, table


async def test_a_running_step_says_since_when_and_when_its_timeout_stops_it(engine) -> None:
    reply = await engine.send(StartRun(playbook=playbook_yaml([SLOW])))
    begun = await until_event(engine, reply.run_id, StepStarted)
    table = status_table(await engine.run(reply.run_id))
    since = begun.at.astimezone(timezone.utc)
    assert f"since {since:%Y-%m-%d %H:%M:%S}Z, times out at {since + timedelta(seconds=90):%Y-%m-%d %H:%M:%S}Z" in table
    await engine.send(CancelRun(run_id=reply.run_id))
    await wait_for_end(engine, reply.run_id)
