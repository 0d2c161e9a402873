"""The services together against a real nats-server: runs, control, bad messages."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from events import json_limits, subjects
from events.codec import decode_reply
from events.commands import CancelRun, PauseRun, ResumeRun, StartRun
from events.run import RunCancelled, RunCompleted, RunFailed, StepFailed, StepStarted
from services.executor.work import Work
from tests.helpers import person, playbook_yaml, until, wait_for_end

pytestmark = pytest.mark.integration


def names(events) -> list[str]:
    return [type(e).__name__ for e in events]


async def start(client, steps, **kwargs) -> str:
    reply = await client.send(StartRun(playbook=playbook_yaml(steps), **kwargs))
    assert reply.accepted, reply.error
    return reply.run_id


async def test_a_playbook_runs_to_completion_with_outputs_flowing_between_steps(engine) -> None:
    run_id = await start(engine, [
        {"id": "make", "action": "shell", "args": {"command": "echo 41"}, "timeout_seconds": 5},
        {"id": "use", "action": "shell", "args": {"command": "expr ${steps.make.stdout} + 1"}, "timeout_seconds": 5},
    ])
    events = await wait_for_end(engine, run_id)
    assert names(events)[-1] == "RunCompleted"
    run = await engine.run(run_id)
    assert run.steps["use"].attempt.outputs["stdout"] == "42"


async def test_an_engine_builds_its_decoders_as_it_starts_not_when_the_first_run_comes(engine) -> None:
    assert json_limits._UNBUILT == []


async def test_a_hostile_parameter_reaches_the_command_as_one_literal_argument(engine) -> None:
    yaml_text = playbook_yaml([{"id": "echo", "action": "shell", "args": {"command": "printf '%s|' ${target}"},
                                "timeout_seconds": 5}], parameters=[{"name": "target"}])
    reply = await engine.send(StartRun(playbook=yaml_text, parameters={"target": "'; rm -rf / #"}))
    await wait_for_end(engine, reply.run_id)
    run = await engine.run(reply.run_id)
    assert run.steps["echo"].attempt.outputs["stdout"] == "'; rm -rf / #|"


async def test_a_hostile_parameter_inside_the_authors_quotes_is_still_one_literal_argument(engine) -> None:
    """`'${target}'` with target = `$(echo pwned)` ran the substitution: the engine's quotes closed the author's."""
    yaml_text = playbook_yaml([{"id": "echo", "action": "shell", "timeout_seconds": 5,
                                "args": {"command": "printf '%s|' '${target}' \"at ${target}\""}}],
                              parameters=[{"name": "target"}])
    reply = await engine.send(StartRun(playbook=yaml_text, parameters={"target": "$(echo pwned)"}))
    await wait_for_end(engine, reply.run_id)
    run = await engine.run(reply.run_id)
    assert run.steps["echo"].attempt.outputs["stdout"] == "$(echo pwned)|at $(echo pwned)|"


async def test_pause_holds_the_next_step_until_resume(engine, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    run_id = await start(engine, [
        {"id": "first", "action": "shell", "args": {"command": f"while [ ! -e {gate} ]; do sleep 0.05; done"},
         "timeout_seconds": 20},
        {"id": "second", "action": "noop"},
    ])
    follow = engine.follow(run_id)
    async for _, event in follow:
        if isinstance(event, StepStarted):
            break
    bob, carol = await person(engine, "bob", "operator"), await person(engine, "carol", "operator")
    paused = await bob.send(PauseRun(run_id=run_id, reason="look first"))
    assert names_of(paused) == ["RunPaused"]
    gate.touch()   # the running step finishes; the next must not start
    async for _, event in follow:
        if type(event).__name__ == "StepSucceeded":
            break
    run = await engine.run(run_id)
    assert (run.status, run.steps["second"].status) == ("paused", "pending")
    resumed = await carol.send(ResumeRun(run_id=run_id))
    assert names_of(resumed)[:2] == ["RunResumed", "StepScheduled"]
    rest = await wait_for_end(engine, run_id)
    assert isinstance(rest[-1], RunCompleted)
    steering = [(type(e).__name__, getattr(e, "actor", None)) for e in rest
                if type(e).__name__ in ("RunPaused", "RunResumed")]
    assert steering == [("RunPaused", "bob"), ("RunResumed", "carol")]


def names_of(reply) -> list[str]:
    assert reply.accepted, reply.error
    return [e["type"] for e in reply.events]


async def test_cancel_kills_a_running_command_and_its_children(engine, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = f"sleep 60 & echo $! >> {pids}; sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    run_id = await start(engine, [{"id": "long", "action": "shell", "args": {"command": command},
                                   "timeout_seconds": 120}])
    async for _, event in engine.follow(run_id):
        if isinstance(event, StepStarted):
            break
    await until(lambda: pids.exists() and len(pids.read_text().split()) == 3, what="three processes started")
    reply = await engine.send(CancelRun(run_id=run_id, reason="wrong box"))
    assert names_of(reply) == ["RunCancelRequested"]
    events = await wait_for_end(engine, run_id, timeout=10)
    assert isinstance(events[-1], RunCancelled)
    failed = [e for e in events if type(e).__name__ == "StepFailed"]
    assert [f.category for f in failed] == ["cancelled"]
    # SIGKILL went to the whole group; on a busy machine the kernel may take a moment to deliver it.
    await until(lambda: not [pid for pid in map(int, pids.read_text().split()) if alive(pid)],
                timeout=2, what="every process of the step gone")


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie waiting for init to reap it is dead."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.mark.ack_wait(1)
async def test_a_step_longer_than_ack_wait_keeps_its_message_with_heartbeats(engine) -> None:
    run_id = await start(engine, [{"id": "slow", "action": "shell", "args": {"command": "sleep 3.5"},
                                   "timeout_seconds": 10}])
    events = await wait_for_end(engine, run_id)
    assert isinstance(events[-1], RunCompleted)
    assert names(events).count("StepStarted") == 1
    info = await engine.nc.jetstream().consumer_info(subjects.RUNS_STREAM, "executor")
    assert info.delivered.consumer_seq == 1   # delivered once: never handed out again


async def test_commands_on_unknown_or_finished_runs_are_rejected_clearly(engine) -> None:
    unknown = await engine.send(PauseRun(run_id="nope"))
    assert (unknown.accepted, unknown.error.code) == (False, "unknown_run")
    assert "no run with id 'nope'" in unknown.error.message
    run_id = await start(engine, [{"id": "a", "action": "noop"}])
    await wait_for_end(engine, run_id)
    late = await engine.send(PauseRun(run_id=run_id))
    assert (late.accepted, late.error.code) == (False, "illegal_transition")
    assert "completed" in late.error.message
    running = await engine.send(ResumeRun(run_id=run_id))
    assert not running.accepted


async def test_an_invalid_playbook_is_rejected_with_its_diagnostics_and_nothing_starts(engine) -> None:
    reply = await engine.send(StartRun(playbook="name: x\nsteps:\n  - id: a\n    action: shel\n",
                                       source="broken.yaml"))
    assert (reply.accepted, reply.error.code) == (False, "invalid_playbook")
    errors = [d for d in reply.error.details if d["severity"] == "error"]
    assert [(d["line"], d["step_id"]) for d in errors] == [(4, "a")]
    assert "shell" in reply.error.message
    assert await engine.list_runs() == []


async def test_undecodable_messages_are_dropped_and_the_services_keep_running(engine) -> None:
    nc = engine.nc
    await nc.jetstream().publish(subjects.run_event("junk", "StepScheduled"), b"\xff not json")
    await nc.jetstream().publish(subjects.run_event("junk", "RunStarted"), b'{"type": "RunStarted"}')
    bad = await nc.request(subjects.command("StartRun"), b"{{{", timeout=5)
    assert b'"bad_request"' in bad.data
    wrong_shape = await nc.request(subjects.command("PauseRun"), b'{"run_id": 5}', timeout=5)
    assert b'"bad_request"' in wrong_shape.data
    unknown = await nc.request(subjects.command("LaunchMissiles"), b"{}", timeout=5)
    assert b'"bad_request"' in unknown.data
    run_id = await start(engine, [{"id": "a", "action": "noop"}])
    events = await wait_for_end(engine, run_id)
    assert isinstance(events[-1], RunCompleted)



async def test_a_command_with_a_field_this_version_does_not_know_is_refused_not_carried_out_without_it(
        engine) -> None:
    """A newer CLI's option reaching an older engine (a downgrade, or versions mixed in a rolling restart) was
    dropped in silence: a start asking `on_failure: rollback` of an engine that did not know it ran without
    rollback. This engine is that older one for the next version: it says which field it does not know."""
    text = playbook_yaml([{"id": "a", "action": "noop"}])
    newer = json.dumps({"playbook": text, "run_id": "newer-option", "priority": "high"}).encode()
    reply = decode_reply((await engine.nc.request(subjects.command("StartRun"), newer, timeout=5,
                                                  headers=engine.headers())).data)
    assert (reply.accepted, reply.error.code) == (False, "bad_request")
    assert "unknown field `priority`" in reply.error.message
    assert not await engine.exists("newer-option")

async def test_a_run_id_may_be_chosen_and_only_used_once(engine) -> None:
    first = await engine.send(StartRun(playbook=playbook_yaml([{"id": "a", "action": "noop"}]),
                                       run_id="deploy-42"))
    assert first.run_id == "deploy-42"
    again = await engine.send(StartRun(playbook=playbook_yaml([{"id": "a", "action": "noop"}]),
                                       run_id="deploy-42"))
    assert (again.accepted, again.error.code) == (False, "run_exists")
    odd = await engine.send(StartRun(playbook=playbook_yaml([{"id": "a", "action": "noop"}]), run_id="a.b>"))
    assert (odd.accepted, odd.error.code) == (False, "bad_request")


async def test_a_playbook_with_security_errors_starts_only_with_allow_unsafe_shell(engine) -> None:
    text = playbook_yaml([{"id": "wipe", "action": "shell", "args": {"command": "echo rm -rf / >/dev/null"},
                           "timeout_seconds": 5},
                          {"id": "danger", "action": "shell", "args": {"command": "rm -rf /$NOTHING_HERE"},
                           "timeout_seconds": 5, "when": False}])
    refused = await engine.send(StartRun(playbook=text))
    assert (refused.accepted, refused.error.code) == (False, "invalid_playbook")
    assert [(d["code"], d["step_id"]) for d in refused.error.details if d["severity"] == "error"] == [("PB401",
                                                                                                       "danger")]
    allowed = await engine.send(StartRun(playbook=text, allow_unsafe_shell=True))
    assert allowed.accepted, allowed.error
    events = await wait_for_end(engine, allowed.run_id)
    assert events[0].allow_unsafe_shell is True
    assert type(events[-1]).__name__ == "RunCompleted"


async def test_a_fault_of_the_engine_while_running_a_step_fails_the_step_instead_of_leaving_it_running(
        engine, monkeypatch, caplog) -> None:
    """An exception the attempt's code did not expect (an engine bug) escaped the executor: the step stayed
    `running` with its lease renewed for ever, and its run could be neither finished nor cancelled."""
    async def broken(self, run, attempt):
        raise RuntimeError("a bug in the engine")
    monkeypatch.setattr(Work, "_do", broken)
    reply = await engine.send(StartRun(playbook=playbook_yaml([{"id": "a", "action": "noop"}])))
    history = await wait_for_end(engine, reply.run_id)
    failed = next(e for e in history if isinstance(e, StepFailed))
    assert (failed.category, failed.error) == ("unknown", "the engine failed while running this step (RuntimeError); "
                                                          "the executor's log has the details")
    assert isinstance(history[-1], RunFailed)
    assert f"{reply.run_id}/a/1 failed unexpectedly" in caplog.text and "RuntimeError" in caplog.text
