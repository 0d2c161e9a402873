"""A run that failed at its third step because a file was missing: create it, retry, and it goes on from there."""
from __future__ import annotations

from pathlib import Path

import pytest

from events.commands import CancelRun, RetryRun, RollbackRun, StartRun
from events.run import TERMINAL_EVENTS, RunRetried, StepStarted
from tests.helpers import failing_until, person, playbook_yaml, refusals, wait_for_end
from events import subjects
from events.codec import decode_event
from projections.sentences import sentence
from services.read import digest_of
from ui.catalog_client import CatalogClient, Published
from ui.client import EngineClient

pytestmark = pytest.mark.integration


def five_steps(work: Path) -> str:
    """Five shell steps that each note that they ran (and, undone, that they were undone); the third
    copies a release file that is not there yet."""
    def step(name: str, command: str) -> str:
        return f"""
  - id: {name}
    action: shell
    args: {{command: "echo {name} >> {work}/ran; {command}"}}
    timeout_seconds: 10
    outputs: [{{name: said, from: stdout}}]
    rollback:
      - {{action: shell, args: {{command: "echo {name} >> {work}/undone"}}, timeout_seconds: 10}}"""
    return "name: five\nparameters:\n  - {name: release, default: release.tar}\nsteps:" + "".join([
        step("fetch", "echo fetched"), step("unpack", "echo unpacked"),
        step("install", f"cp {work}/${{release}} {work}/installed && echo installed"),
        step("migrate", "echo migrated"), step("announce", "echo ${steps.fetch.said} and ${steps.install.said}"),
    ])


def ran(work: Path, name: str = "ran") -> list[str]:
    path = work / name
    return path.read_text().split() if path.exists() else []


def terminal(events: list) -> list[str]:
    return [type(e).__name__ for e in events if isinstance(e, TERMINAL_EVENTS)]


async def test_after_the_missing_file_is_created_a_retry_runs_steps_3_to_5_only_and_ends_once(engine, tmp_path) -> None:
    olga = await person(engine, "olga", "operator")
    reply = await olga.send(StartRun(playbook=five_steps(tmp_path)))
    first = await wait_for_end(olga, reply.run_id)
    assert type(first[-1]).__name__ == "RunFailed" and "install" in first[-1].failed_steps
    assert ran(tmp_path) == ["fetch", "unpack", "install"]

    (tmp_path / "release.tar").write_text("the release")
    retried = await olga.send(RetryRun(run_id=reply.run_id, reason="release file restored"))
    assert retried.accepted, retried.error
    assert [e["type"] for e in retried.events] == ["RunRetried", "StepScheduled"]
    assert retried.events[0]["actor"] == "olga" and retried.events[0]["steps"] == ["install", "migrate", "announce"]
    events = await wait_for_end(olga, reply.run_id, after_retry=True)

    assert ran(tmp_path) == ["fetch", "unpack", "install", "install", "migrate", "announce"]
    after = events[[type(e) for e in events].index(RunRetried) + 1:]
    assert [e.step_id for e in after if isinstance(e, StepStarted)] == ["install", "migrate", "announce"]
    assert terminal(after) == ["RunCompleted"]
    assert terminal([e for _, e in await olga.events(reply.run_id)]) == ["RunFailed", "RunCompleted"]
    run = await olga.run(reply.run_id)
    assert run.status == "completed"
    assert (run.steps["fetch"].attempt.number, run.steps["install"].attempt.number) == (1, 2)
    assert run.steps["announce"].attempt.outputs["stdout"] == "fetched and installed"

    undo = await olga.send(RollbackRun(run_id=reply.run_id, reason="wrong release"))
    assert undo.accepted, undo.error
    rolled_back = await wait_for_end(olga, reply.run_id, after_rollback_start=True)
    assert type(rolled_back[-1]).__name__ == "RollbackCompleted"
    assert ran(tmp_path, "undone") == ["announce", "migrate", "install", "unpack", "fetch"]   # each once


async def test_a_retried_run_that_fails_further_on_rolls_back_what_ran_and_not_what_never_did(engine,
                                                                                            tmp_path) -> None:
    olga = await person(engine, "olga", "operator")
    text = five_steps(tmp_path).replace("echo migrated", f"test -f {tmp_path}/schema.sql")
    reply = await olga.send(StartRun(playbook=text))
    await wait_for_end(olga, reply.run_id)
    (tmp_path / "release.tar").write_text("the release")
    assert (await olga.send(RetryRun(run_id=reply.run_id))).accepted
    again = await wait_for_end(olga, reply.run_id, after_retry=True)
    assert terminal(again) == ["RunFailed"] and again[-1].failed_steps == ["migrate"]
    assert ran(tmp_path) == ["fetch", "unpack", "install", "install", "migrate"]

    assert (await olga.send(RollbackRun(run_id=reply.run_id))).accepted
    rolled_back = await wait_for_end(olga, reply.run_id, after_rollback_start=True)
    assert type(rolled_back[-1]).__name__ == "RollbackCompleted"
    # migrate ran (and may have left something); announce never did; install is undone once for its two attempts
    assert ran(tmp_path, "undone") == ["migrate", "install", "unpack", "fetch"]


async def test_a_retry_is_authorised_like_a_start_and_a_refused_one_is_recorded(engine, tmp_path) -> None:
    olga = await person(engine, "olga", "operator")
    reply = await olga.send(StartRun(playbook=five_steps(tmp_path)))
    await wait_for_end(olga, reply.run_id)
    before = len(await olga.events(reply.run_id))
    for name, grant in (("vic", "viewer"), ("abe", "approver"), ("otto", "operator:other-*")):
        who = await person(engine, name, grant)
        answer = await who.send(RetryRun(run_id=reply.run_id))
        assert (answer.accepted, answer.error.code) == (False, "forbidden"), name
        assert f"{name} may not retry run {reply.run_id} of five" in answer.error.message
    forged = await olga.send(RetryRun(run_id=reply.run_id, actor="admin"))
    assert (forged.accepted, forged.error.code) == (False, "forged_actor")
    assert len(await olga.events(reply.run_id)) == before                     # nothing happened to the run
    refused = [(r.principal, r.action, r.code) for r in await refusals(engine.nc)]
    assert refused == [("vic", "retry", "forbidden"), ("abe", "retry", "forbidden"), ("otto", "retry", "forbidden"),
                       ("olga", "retry", "forged_actor")]
    assert (await olga.send(RetryRun(run_id=reply.run_id, from_step="fetch"))).accepted   # the operator may


async def test_a_run_started_with_allow_unsafe_shell_is_retried_only_with_the_unsafe_shell_grant(engine,
                                                                                                  tmp_path) -> None:
    uma = await person(engine, "uma", "operator", "unsafe_shell")
    reply = await uma.send(StartRun(playbook=five_steps(tmp_path), allow_unsafe_shell=True))
    assert reply.accepted, reply.error
    await wait_for_end(uma, reply.run_id)
    otto = await person(engine, "otto", "operator")
    refused = await otto.send(RetryRun(run_id=reply.run_id))
    assert (refused.accepted, refused.error.code) == (False, "forbidden")
    assert "otto may not retry" in refused.error.message and "with allow_unsafe_shell" in refused.error.message
    assert (await uma.send(RetryRun(run_id=reply.run_id))).accepted


async def test_a_cancelled_run_is_retried_with_a_corrected_parameter(engine, tmp_path) -> None:
    olga = await person(engine, "olga", "operator")
    (tmp_path / "other.tar").write_text("the other release")
    text = five_steps(tmp_path).replace("echo unpacked", "sleep 30")
    reply = await olga.send(StartRun(playbook=text))
    async for _, event in olga.follow(reply.run_id):
        if isinstance(event, StepStarted) and event.step_id == "unpack":
            break
    await olga.send(CancelRun(run_id=reply.run_id, reason="wrong release"))
    assert type((await wait_for_end(olga, reply.run_id))[-1]).__name__ == "RunCancelled"

    text_fixed = text.replace("sleep 30", "echo unpacked")
    retried = await olga.send(RetryRun(run_id=reply.run_id, parameters={"release": "other.tar"},
                                       playbook=text_fixed, source="fixed.yaml"))
    assert retried.accepted, retried.error
    assert retried.events[0]["corrected"] == ["release"] and retried.events[0]["source"] == "fixed.yaml"
    await wait_for_end(olga, reply.run_id, after_retry=True)
    run = await olga.run(reply.run_id)
    assert run.status == "completed", run.failure
    assert run.started.parameters["release"] == "other.tar"
    assert (tmp_path / "installed").read_text() == "the other release"


async def test_a_retry_the_run_cannot_take_is_refused_with_a_reason(engine, tmp_path) -> None:
    olga = await person(engine, "olga", "operator")
    reply = await olga.send(StartRun(playbook=five_steps(tmp_path)))
    await wait_for_end(olga, reply.run_id)
    cases = [
        (RetryRun(run_id="nosuchrun"), "unknown_run"),
        (RetryRun(run_id=reply.run_id, from_step="migrate"), "illegal_transition"),
        (RetryRun(run_id=reply.run_id, parameters={"relase": "x"}), "invalid_playbook"),
        (RetryRun(run_id=reply.run_id, playbook="name: five\nsteps: []\n"), "invalid_playbook"),
    ]
    for command, code in cases:
        answer = await olga.send(command)
        assert (answer.accepted, answer.error.code) == (False, code), command
    assert (await olga.run(reply.run_id)).status == "failed"


async def test_an_operator_scoped_to_a_playbook_retries_with_its_catalogs_next_version_not_with_a_text(
        engine, tmp_path) -> None:
    """The catalog's version is the admin's; a text names itself, so only a grant on every playbook covers it."""
    first = five_steps(tmp_path)
    fixed = first.replace(f"cp {tmp_path}/${{release}}", f"echo restored > {tmp_path}/${{release}}; cp "
                                                          f"{tmp_path}/${{release}}")
    catalog = CatalogClient(engine)
    assert isinstance(await catalog.publish(first, version="1"), Published)
    assert isinstance(await catalog.publish(fixed, version="2"), Published)
    sally = await person(engine, "sally", "operator:five")
    reply = await sally.send(StartRun(playbook_id="five@1"))
    assert reply.accepted, reply.error
    await wait_for_end(sally, reply.run_id)

    by_text = await sally.send(RetryRun(run_id=reply.run_id, playbook=fixed))
    assert (by_text.accepted, by_text.error.code) == (False, "forbidden")
    assert "from a text they sent" in by_text.error.message
    by_version = await sally.send(RetryRun(run_id=reply.run_id, playbook_id="five@2", reason="fixed in 2"))
    assert by_version.accepted, by_version.error
    events = await wait_for_end(sally, reply.run_id, after_retry=True)
    assert terminal(events[[type(e) for e in events].index(RunRetried):]) == ["RunCompleted"]


async def test_a_run_retried_with_another_playbook_points_at_the_text_it_runs_now(engine, tmp_path) -> None:
    """A replacement is pinned as a start pins: by the catalog's version and digest, or by the digest of the text
    sent; the run no longer says it follows the text it started with."""
    first = five_steps(tmp_path)
    fixed = first.replace(f"cp {tmp_path}/${{release}}", f"echo restored > {tmp_path}/${{release}}; cp "
                                                          f"{tmp_path}/${{release}}")
    catalog = CatalogClient(engine)
    assert isinstance(await catalog.publish(first, version="1"), Published)
    two = await catalog.publish(fixed, version="2")
    assert isinstance(two, Published)
    reply = await engine.send(StartRun(playbook_id="five@1"))
    await wait_for_end(engine, reply.run_id)
    assert (await engine.send(RetryRun(run_id=reply.run_id, playbook_id="five@2"))).accepted
    await wait_for_end(engine, reply.run_id, after_retry=True)
    pin = (await engine.run(reply.run_id)).started.pin
    assert (pin.version, pin.digest, pin.published) == ("2", two.version.digest, True)
    retried = [e for _, e in await engine.events(reply.run_id) if isinstance(e, RunRetried)]
    assert [e.source for e in retried] == ["five@2"]          # where it came from, as a start by name says

    again = fixed.replace("echo restored", "echo restored again")
    (tmp_path / "release.tar").unlink()     # restored by the first retry: five@1 fails again without it
    other = await engine.send(StartRun(playbook_id="five@1"))
    await wait_for_end(engine, other.run_id)
    assert (await engine.send(RetryRun(run_id=other.run_id, playbook=again))).accepted
    await wait_for_end(engine, other.run_id, after_retry=True)
    pin = (await engine.run(other.run_id)).started.pin
    assert (pin.digest, pin.published) == (digest_of(again.encode()), False)
    assert await engine.playbooks.text(pin.digest) == again


async def test_a_run_of_a_big_playbook_is_retried_with_its_next_version_and_the_retry_stays_small(engine) -> None:
    """A replacement is stored by its pin as a start is: RunRetried does not carry a 2 MiB playbook (more than one
    NATS message), and every reader folds the replacement all the same."""
    def big(version: str, command: str) -> str:
        return playbook_yaml([{"id": "a", "action": "shell", "timeout_seconds": 10, "args": {"command": command}}],
                             name="big-retried", version=version, description="x" * 2 * 2**20)
    catalog = CatalogClient(engine)
    for text in (big("1", "exit 3"), big("2", "echo fixed")):
        assert isinstance(await catalog.publish(text), Published)
    reply = await engine.send(StartRun(playbook_id="big-retried@1"))
    await wait_for_end(engine, reply.run_id)
    retried = await engine.send(RetryRun(run_id=reply.run_id, playbook_id="big-retried@2"))
    assert retried.accepted, retried.error
    assert terminal(await wait_for_end(engine, reply.run_id, after_retry=True))[-1] == "RunCompleted"
    stored = await engine.store.last_on(subjects.run_event(reply.run_id, "RunRetried"))
    assert stored is not None and len(stored) < 4096
    assert "playbook replaced (big-retried@2, version 2)" in str(sentence(decode_event(stored)))   # as stored
    run = await EngineClient(engine.nc).run(reply.run_id)                # a reader of its own resolves the pin
    assert run.specs["a"].args == {"command": "echo fixed"} and run.started.pin.version == "2"


async def test_a_retried_run_gives_the_failed_step_its_retry_policy_afresh(engine, tmp_path) -> None:
    """Retrying a run is a new start for its failed step: its `retry` attempts and backoff count again,
    not from the attempts the first series already spent."""
    olga = await person(engine, "olga", "operator")
    text = failing_until("flaky-retried", tmp_path / "tries")
    reply = await olga.send(StartRun(playbook=text))
    first = await wait_for_end(olga, reply.run_id)
    assert terminal(first) == ["RunFailed"] and ran(tmp_path, "tries") == ["x", "x"]

    retried = await olga.send(RetryRun(run_id=reply.run_id, parameters={"fail_until": "4"}))
    assert retried.accepted, retried.error
    again = await wait_for_end(olga, reply.run_id, after_retry=True)
    assert terminal(again) == ["RunCompleted"], [type(e).__name__ for e in again]
    assert [e.attempt for e in again if isinstance(e, StepStarted)] == [3, 4]   # two tries of the policy's two
