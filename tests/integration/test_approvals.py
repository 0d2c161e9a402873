"""Approval gates against a real nats-server: quorum, refusals, timeouts on JetStream timers.

Everyone acts with a token of their own: a gate counts verified people, never a typed name.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path


import pytest

from events.commands import ApproveStep, RejectStep, StartRun
from events.run import (
    ApprovalAttemptRefused, ApprovalRejected, ApprovalRequested, ApprovalTimedOut, RunEvent, StepFailed,
)
from services.store import EventStore
from tests.helpers import (
    person, playbook_yaml, refusals, running_engine, until_event, until_timer_armed, wait_for_end,
)
from ui.client import EngineClient

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def directory(settings) -> Path:
    path = settings.directory_path
    path.write_text("users:\n  alice: [ops-team]\n  bob: [ops-team, tech-lead]\n  carol: [tech-lead]\n  dave: []\n")
    return path


@pytest.fixture
async def people(engine) -> dict[str, EngineClient]:
    """alice, bob, carol and dave, each with a token of their own (operator and approver everywhere)."""
    return {name: await person(engine, name) for name in ("alice", "bob", "carol", "dave")}


def gated_playbook(**gate) -> str:
    gate = {"message": "Ship ${version}?", "required_approvers": ["ops-team", "tech-lead"], **gate}
    return playbook_yaml([
        {"id": "build", "action": "noop"},
        {"id": "deploy", "action": "noop", "approval_gate": gate},
    ], parameters=[{"name": "version", "default": "2.0"}])


async def start_and_wait_for_gate(engine, text: str, starter: EngineClient | None = None) -> str:
    reply = await (starter or engine).send(StartRun(playbook=text))
    assert reply.accepted, reply.error
    async for _, event in engine.follow(reply.run_id):
        if isinstance(event, ApprovalRequested):
            assert event.message == "Ship 2.0?"
            return reply.run_id
    raise AssertionError("the run ended without asking for approval")


def names(events) -> list[str]:
    return [type(e).__name__ for e in events]


async def test_a_quorum_of_two_groups_needs_two_distinct_people(engine, people) -> None:
    run_id = await start_and_wait_for_gate(engine, gated_playbook())
    first = await people["bob"].send(ApproveStep(run_id=run_id, step_id="deploy", comment="lgtm"))
    assert [e["type"] for e in first.events] == ["ApprovalGiven"]
    assert (await engine.run(run_id)).display_status == "waiting_approval"
    second = await people["alice"].send(ApproveStep(run_id=run_id, step_id="deploy"))
    assert [e["type"] for e in second.events][:3] == ["ApprovalGiven", "ApprovalGranted", "StepScheduled"]
    events = await wait_for_end(engine, run_id)
    assert names(events)[-1] == "RunCompleted"
    granted = next(e for e in events if type(e).__name__ == "ApprovalGranted")
    assert granted.approvers == ["alice", "bob"]
    given = [(e.actor, e.groups, e.comment) for e in events if type(e).__name__ == "ApprovalGiven"]
    assert given == [("bob", ["ops-team", "tech-lead"], "lgtm"), ("alice", ["ops-team"], "")]


async def test_refused_attempts_are_answered_no_and_recorded(engine, people) -> None:
    run_id = await start_and_wait_for_gate(engine, gated_playbook(), starter=people["alice"])
    own = await people["alice"].send(ApproveStep(run_id=run_id, step_id="deploy"))
    assert (own.accepted, own.error.code) == (False, "approval_refused")
    assert "alice started this run" in own.error.message
    stranger = await people["dave"].send(ApproveStep(run_id=run_id, step_id="deploy"))
    assert stranger.error.code == "forbidden" and "dave may not approve this gate" in stranger.error.message
    await people["bob"].send(ApproveStep(run_id=run_id, step_id="deploy"))
    twice = await people["bob"].send(ApproveStep(run_id=run_id, step_id="deploy"))
    assert "already approved" in twice.error.message
    refused = [(e.actor, e.decision) for _, e in await engine.events(run_id) if isinstance(e, ApprovalAttemptRefused)]
    assert refused == [("alice", "approve"), ("bob", "approve")]
    (outside,) = [r for r in await refusals(engine.nc) if r.principal == "dave"]
    assert (outside.action, outside.code, outside.door) == ("approve", "forbidden", "nats")
    assert outside.target.startswith(f"run {run_id} of test")


async def test_a_name_in_the_command_is_never_who_approves(engine, people) -> None:
    run_id = await start_and_wait_for_gate(engine, gated_playbook(required_approvers=["carol"]))
    forged = await people["dave"].send(ApproveStep(run_id=run_id, step_id="deploy", actor="carol"))
    assert (forged.accepted, forged.error.code) == (False, "forged_actor")
    assert "names actor 'carol', but its credential is dave's" in forged.error.message
    anonymous = await EngineClient(engine.nc).send(ApproveStep(run_id=run_id, step_id="deploy", actor="carol"))
    assert (anonymous.accepted, anonymous.error.code) == (False, "unauthenticated")
    run = await engine.run(run_id)
    assert run.steps["deploy"].gate.status == "requested" and not run.steps["deploy"].gate.approvals
    recorded = [(r.principal, r.code) for r in await refusals(engine.nc)]
    assert ("dave", "forged_actor") in recorded and ("anonymous", "unauthenticated") in recorded
    own = await people["carol"].send(ApproveStep(run_id=run_id, step_id="deploy", actor="Carol"))
    assert own.accepted, own.error           # naming oneself (in any case) is no forgery


async def test_an_admin_approves_on_someones_behalf_recorded_as_both_and_counted_once(engine, people) -> None:
    run_id = await start_and_wait_for_gate(engine, gated_playbook(), starter=people["dave"])
    admin_for_bob = EngineClient(engine.nc, engine.caller.credential, on_behalf_of="bob")
    first = await admin_for_bob.send(ApproveStep(run_id=run_id, step_id="deploy"))
    assert first.accepted, first.error
    again = await people["bob"].send(ApproveStep(run_id=run_id, step_id="deploy"))
    assert "bob has already approved" in again.error.message
    not_admin = EngineClient(engine.nc, people["alice"].caller.credential, on_behalf_of="carol")
    refused = await not_admin.send(ApproveStep(run_id=run_id, step_id="deploy"))
    assert refused.error.code == "forbidden" and refused.error.message.startswith("only an admin may act")
    await people["alice"].send(ApproveStep(run_id=run_id, step_id="deploy"))
    events = await wait_for_end(engine, run_id)
    given = [(e.actor, e.on_behalf_of, e.groups) for e in events if type(e).__name__ == "ApprovalGiven"]
    assert given == [("admin", "bob", ["ops-team", "tech-lead"]), ("alice", None, ["ops-team"])]
    assert next(e for e in events if type(e).__name__ == "ApprovalGranted").approvers == ["alice", "bob"]


async def test_a_reject_fails_the_step_and_the_run(engine, people) -> None:
    run_id = await start_and_wait_for_gate(engine, gated_playbook())
    reply = await people["carol"].send(RejectStep(run_id=run_id, step_id="deploy", comment="freeze week"))
    assert reply.accepted
    events = await wait_for_end(engine, run_id)
    assert names(events)[-3:] == ["ApprovalRejected", "StepFailed", "RunFailed"]
    assert events[-2].category == "authorization" and "freeze week" in events[-2].error


async def test_auto_approve_after_timeout(engine) -> None:
    run_id = await start_and_wait_for_gate(engine, gated_playbook(timeout_seconds=0.5, auto_approve_after_timeout=True))
    events = await wait_for_end(engine, run_id, timeout=15)
    assert names(events)[-1] == "RunCompleted"
    granted = next(e for e in events if type(e).__name__ == "ApprovalGranted")
    assert (granted.actor, granted.by_timeout) == ("system", True)
    assert "ApprovalDeadlinePassed" in names(events)


async def test_a_timeout_fails_the_step_and_triggers_the_rollback(engine, tmp_path: Path) -> None:
    undone = tmp_path / "undone"
    text = playbook_yaml([
        {"id": "prepare", "action": "shell", "args": {"command": "echo prepared"}, "timeout_seconds": 5,
         "rollback": [{"action": "shell", "args": {"command": f"echo undo ${{steps.prepare.stdout}} > {undone}"},
                       "timeout_seconds": 5}]},
        {"id": "deploy", "action": "noop", "approval_gate": {"required_approvers": ["ops-team"],
                                                             "timeout_seconds": 0.5}},
    ], on_failure="rollback")
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id, timeout=15)
    assert names(events)[-1] == "RollbackCompleted"
    assert "ApprovalTimedOut" in names(events)
    failed = next(e for e in events if type(e).__name__ == "StepFailed")
    assert (failed.step_id, failed.category) == ("deploy", "timeout")
    assert undone.read_text().strip() == "undo prepared"
    assert (await engine.run(reply.run_id)).status == "rolled_back"


async def test_an_approval_racing_the_deadline_has_exactly_one_outcome_every_time(engine, people) -> None:
    text = gated_playbook(required_approvers=["ops-team"], timeout_seconds=0.3)
    for _ in range(50):
        run_id = await start_and_wait_for_gate(engine, text)
        request = next(e for _, e in await engine.events(run_id) if isinstance(e, ApprovalRequested))
        delay = (request.deadline - request.at).total_seconds()
        await asyncio.sleep(delay - 0.003)   # aim the approval at the instant the timer fires
        await people["alice"].send(ApproveStep(run_id=run_id, step_id="deploy"))
        events = await wait_for_end(engine, run_id, timeout=15)
        decided = [n for n in names(events) if n in ("ApprovalGranted", "ApprovalTimedOut")]
        assert len(decided) == 1, names(events)


async def test_a_deadline_that_falls_while_everything_is_down_takes_effect_on_restart(nats_server, settings) -> None:
    text = gated_playbook(required_approvers=["ops-team"], timeout_seconds=3)
    async with running_engine(settings) as engine:
        run_id = await start_and_wait_for_gate(engine, text)
        await until_timer_armed(engine)
        request = next(e for _, e in await engine.events(run_id) if isinstance(e, ApprovalRequested))
    nats_server.stop()                                       # every process down, NATS included
    await asyncio.sleep(max(0.0, (request.deadline - datetime.now(timezone.utc)).total_seconds()) + 0.5)
    await nats_server.start()
    restarted = datetime.now(timezone.utc)
    async with running_engine(settings) as engine:
        events = await wait_for_end(engine, run_id, timeout=15)
    assert names(events)[-3:] == ["ApprovalTimedOut", "StepFailed", "RunFailed"]
    timed_out = next(e for e in events if type(e).__name__ == "ApprovalTimedOut")
    assert (timed_out.at - restarted).total_seconds() < 2.0   # at once, not after another wait



@pytest.mark.parametrize("decision", ["rejected", "timed out", "rejected, its step failed"])
async def test_a_gate_decided_against_just_before_a_crash_still_fails_its_step(engine, settings, decision) -> None:
    """The decision's first events stored, and the process gone before the rest: the gate is not asked again,
    and the run ends."""
    reply = await engine.send(StartRun(playbook=gated_playbook(required_approvers=[], timeout_seconds=600)))
    request = await until_event(engine, reply.run_id, ApprovalRequested)
    last = max(seq for seq, _ in await engine.events(reply.run_id))
    at = datetime.now(timezone.utc)
    decided: list[RunEvent] = [
        ApprovalRejected(run_id=reply.run_id, at=at, step_id="deploy", actor="carol", comment="not now")
        if decision.startswith("rejected") else ApprovalTimedOut(run_id=reply.run_id, at=at, step_id="deploy")]
    if decision.endswith("failed"):
        decided.append(StepFailed(run_id=reply.run_id, at=at, step_id="deploy", attempt=1, category="authorization",
                                  error="approval rejected by carol: not now"))
    nc = await settings.connect("test-crash-between-appends")
    try:
        await EventStore(nc).append(reply.run_id, decided, expected=last)
    finally:
        await nc.close()
    events = await wait_for_end(engine, reply.run_id)

    assert [type(e).__name__ for e in events[-2:]] == ["StepFailed", "RunFailed"]
    assert sum(isinstance(e, ApprovalRequested) for e in events) == 1 and request.step_id == "deploy"
    assert events[-2].error == ("approval rejected by carol: not now" if decision.startswith("rejected")
                                else "approval timed out after 600s")
