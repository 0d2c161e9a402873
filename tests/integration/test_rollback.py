"""A deploy whose health check fails is rolled back, in reverse, with the forward run's outputs."""
from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from events.commands import ApproveStep, CancelRun, RetryRun, RollbackRun, StartRun
from events.run import ApprovalRequested, RollbackStarted, StepRollbackStarted, StepRolledBack
from tests.helpers import local_http, person, until, wait_for_end

pytestmark = pytest.mark.integration


@pytest.fixture
async def sick_service():
    """A service that answers its health check with 503."""
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "degraded"}, status=503)

    async with local_http([web.get("/health", health)]) as url:
        yield url


def deploy_playbook(base_url: str, journal: Path) -> str:
    return f"""
name: deploy
on_failure: rollback
parameters:
  - {{name: version, default: "2.4.1"}}
steps:
  - id: backup
    action: shell
    args: {{command: "echo /backups/release-1.9.tar"}}
    outputs: [{{name: backup_file, from: stdout}}]
    timeout_seconds: 5
    rollback:
      - action: shell
        args: {{command: "echo remove-backup ${{steps.backup.backup_file}} >> {journal}"}}
        timeout_seconds: 5
  - id: deploy
    action: shell
    args: {{command: "echo deployed ${{version}}"}}
    timeout_seconds: 5
    approval_gate:
      message: Deploy ${{version}}?
      required_approvers: [ops-team, tech-lead]
    rollback:
      - action: shell
        args: {{command: "echo restore ${{steps.backup.backup_file}} over ${{stdout}} >> {journal}"}}
        timeout_seconds: 5
  - id: health_check
    action: http_request
    args: {{url: "{base_url}/health"}}
    timeout_seconds: 5
    validations:
      - {{type: http_status, left: "${{status_code}}", right: 200}}
"""


async def test_a_failed_health_check_rolls_back_deploy_then_backup(engine, settings, sick_service, tmp_path) -> None:
    settings.directory_path.write_text("users:\n  alice: [ops-team]\n  carol: [tech-lead]\n")
    journal = tmp_path / "journal"
    reply = await engine.send(StartRun(playbook=deploy_playbook(sick_service, journal)))
    async for _, event in engine.follow(reply.run_id):
        if isinstance(event, ApprovalRequested):
            break
    for who in ("alice", "carol"):
        approver = await person(engine, who, "approver")
        answer = await approver.send(ApproveStep(run_id=reply.run_id, step_id="deploy", comment=f"ok from {who}"))
        assert answer.accepted, answer.error
    events = await wait_for_end(engine, reply.run_id)

    assert journal.read_text().splitlines() == [
        "restore /backups/release-1.9.tar over deployed 2.4.1",    # deploy first: the reverse order
        "remove-backup /backups/release-1.9.tar",
    ]
    names = [type(e).__name__ for e in events]
    assert names[-1] == "RollbackCompleted"
    rolled = [e.step_id for e in events if type(e).__name__ == "StepRolledBack"]
    assert rolled == ["deploy", "backup"]
    started = next(e for e in events if type(e).__name__ == "RollbackStarted")
    assert started.waves == [["deploy"], ["backup"]] and "health_check" in started.reason
    who_approved = [(e.actor, e.comment) for e in events if type(e).__name__ == "ApprovalGiven"]
    assert who_approved == [("alice", "ok from alice"), ("carol", "ok from carol")]
    assert all(e.at is not None for e in events)
    run = await engine.run(reply.run_id)
    assert run.status == "rolled_back"

    again = await engine.send(RollbackRun(run_id=reply.run_id))
    assert (again.accepted, again.error.code) == (False, "illegal_transition")


async def test_a_completed_run_can_be_rolled_back_by_hand(engine, tmp_path) -> None:
    journal = tmp_path / "journal"
    text = f"""
name: small
steps:
  - id: change
    action: shell
    args: {{command: "echo changed"}}
    timeout_seconds: 5
    rollback:
      - {{action: shell, args: {{command: "echo undo ${{stdout}} >> {journal}"}}, timeout_seconds: 5}}
"""
    reply = await engine.send(StartRun(playbook=text))
    await wait_for_end(engine, reply.run_id)
    rollback = await engine.send(RollbackRun(run_id=reply.run_id, reason="bad change"))
    assert [e["type"] for e in rollback.events][:2] == ["RollbackStarted", "StepRollbackScheduled"]
    events = [e async for _, e in engine.follow(reply.run_id)]
    assert type(events[-1]).__name__ == "RollbackCompleted"
    assert journal.read_text().strip() == "undo changed"
    started = next(e for e in events if type(e).__name__ == "RollbackStarted")
    assert (started.actor, started.reason) == ("admin", "bad change")


async def test_a_rollback_cancelled_half_way_and_asked_again_undoes_only_what_is_left(engine, tmp_path) -> None:
    journal, hung = tmp_path / "journal", tmp_path / "hung-once"
    hangs_once = f"if [ -e {hung} ]; then echo undo b >> {journal}; else touch {hung}; sleep 60; fi"
    text = f"""
name: half-undone
on_failure: rollback
steps:
  - {{id: a, action: shell, parallel_group: g, args: {{command: "true"}}, timeout_seconds: 5,
     rollback: [{{action: shell, args: {{command: "echo undo a >> {journal}"}}}}]}}
  - {{id: b, action: shell, parallel_group: g, args: {{command: "true"}}, timeout_seconds: 5,
     rollback: [{{action: shell, args: {{command: "{hangs_once}"}}}}]}}
  - {{id: broken, action: shell, args: {{command: "exit 3"}}, timeout_seconds: 5}}
"""
    reply = await engine.send(StartRun(playbook=text))
    seen: set[str] = set()
    async for _, event in engine.follow(reply.run_id):
        if isinstance(event, StepRolledBack) and event.step_id == "a" or (
                isinstance(event, StepRollbackStarted) and event.step_id == "b"):
            seen.add(type(event).__name__)
        if len(seen) == 2:
            break
    # Asked again while it rolls back: already so, nothing new; a retry is refused, saying what is going on.
    twice = await engine.send(RollbackRun(run_id=reply.run_id))
    assert (twice.accepted, twice.events) == (True, [])
    retry = await engine.send(RetryRun(run_id=reply.run_id))
    assert not retry.accepted and "is rolling back: what it did is being undone" in retry.error.message
    # Its StepRollbackStarted is stored before its shell runs: cancelled sooner, it would hang the second time.
    await until(hung.exists, what="b's first rollback marking that it hangs")
    cancel = await engine.send(CancelRun(run_id=reply.run_id, reason="b's rollback hangs"))
    assert cancel.accepted, cancel.error
    assert type((await wait_for_end(engine, reply.run_id))[-1]).__name__ == "RunCancelled"
    retry = await engine.send(RetryRun(run_id=reply.run_id))
    assert not retry.accepted and "was rolled back in part (cancelled); roll it back again" in retry.error.message

    cancelled_at = max(seq for seq, _ in await engine.events(reply.run_id))
    again = await engine.send(RollbackRun(run_id=reply.run_id, reason="finish undoing it"))
    assert again.accepted, again.error
    events = await wait_for_end(engine, reply.run_id, after=cancelled_at)

    assert type(events[-1]).__name__ == "RollbackCompleted"
    assert isinstance(events[0], RollbackStarted) and events[0].waves == [["b"]]   # a is undone already
    assert journal.read_text().splitlines() == ["undo a", "undo b"]
