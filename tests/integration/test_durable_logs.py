"""Durable live logs: a running step's lines are kept in PB_LOGS, so whoever joins late — the CLI,
the dashboard's logs stream, the client, the example agent — reads from the first line, then live ones, each once and in
order, then the end.

The step prints a line and waits for a file the test creates before it prints the next, so the test
decides when each line exists; a plain subscription on the live subject tells it a line went out.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import aiohttp
import pytest

from events import subjects
from events.commands import StartRun
from events.output import OutputEnded
from services.logs import MAX_AGE_SECONDS, MAX_LINES_PER_ATTEMPT
from services.settings import LOGS_MAX_BYTES
from tests.e2e.conftest import ROOT, playbook_cli
from tests.helpers import person, playbook_yaml, read_until, refusals, wait_for_end

pytestmark = pytest.mark.integration

LINES = [f"line {n}" for n in range(1, 7)]


def six_lines_at_the_tests_pace(gates: Path) -> str:
    """`line 1` ... `line 6`, each after the file `go<n-1>` exists."""
    waits = [f"while [ ! -e {gates}/go{n} ]; do sleep 0.01; done" for n in range(1, 6)]
    script = "; ".join(f"echo '{line}'; {wait}" for line, wait in zip(LINES, waits)) + f"; echo '{LINES[-1]}'"
    return playbook_yaml([{"id": "emit", "action": "shell", "timeout_seconds": 60, "args": {"command": script}}],
                         name="paced")


class Pacer:
    """Lets the step print its next line, and knows (from the live subject) which lines went out."""

    def __init__(self, gates: Path) -> None:
        self.gates, self.out = gates, asyncio.Queue[str]()

    async def on_line(self, msg) -> None:
        body = json.loads(msg.data)
        if body["type"] == "OutputLine":
            await self.out.put(body["text"])

    async def printed(self, text: str) -> None:
        assert await asyncio.wait_for(self.out.get(), 20) == text

    def allow(self, n: int) -> None:
        (self.gates / f"go{n}").touch()


async def test_clients_joining_at_line_4_of_a_6_line_step_get_lines_1_to_6_then_the_end(
        engine, web_server, engine_env, tmp_path) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    pacer = Pacer(gates)
    watching = await engine.nc.subscribe(subjects.live_output_of_run("paced"), cb=pacer.on_line)
    reply = await engine.send(StartRun(run_id="paced", playbook=six_lines_at_the_tests_pace(gates)))
    assert reply.accepted, reply.error
    await pacer.printed("line 1")
    for n in (1, 2, 3):
        pacer.allow(n)
        await pacer.printed(f"line {n + 1}")                  # line 4 is out; the step waits for go4

    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ui.cli.main", "logs", "paced", "emit", "--follow", env=engine_env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    agent = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "feed_agent.py"), "logs", "paced", "emit", env=engine_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(f"{web_server.url}/api/runs/paced/logs/stream?step=emit") as response:
            client = engine.logs("paced", "emit", 1, follow=True)
            try:
                joined = {"cli": [await _cli_line(cli) for _ in range(4)],
                          "agent": [json.loads(await _cli_line(agent))["text"] for _ in range(4)],
                          "sse": [m.data["text"] for m in await read_until(response, lambda _, seen: len(seen) == 4)],
                          "client": [(await anext(client))[1].text for _ in range(4)]}
                assert all(seen == LINES[:4] for seen in joined.values()), joined   # from the first, though late
                pacer.allow(4)
                await pacer.printed("line 5")
                pacer.allow(5)
                await pacer.printed("line 6")
                rest = await asyncio.wait_for(_all(client), 30)
                joined["client"] += [item.text for _, item in rest[:-1]]
                assert isinstance(rest[-1][1], OutputEnded) and rest[-1][1].lines == 6      # then the end
                after = await read_until(response, lambda m, _: m.event == "log")
                joined["sse"] += [m.data["text"] for m in after[:2]]
                assert [m.event for m in after] == ["live", "live", "end", "log"]
                assert after[3].data[0]["text"] == "\n".join(LINES)                       # the recorded output
                out, err = await asyncio.wait_for(cli.communicate(), 30)
                joined["cli"] += out.decode().splitlines()
                assert cli.returncode == 0, err.decode()
                out, err = await asyncio.wait_for(agent.communicate(), 30)
                printed = [json.loads(line) for line in out.decode().splitlines()]
                joined["agent"] += [line["text"] for line in printed[:-1]]
                assert (agent.returncode, printed[-1]["type"], printed[-1]["lines"]) == (0, "OutputEnded", 6), err
            finally:
                await client.aclose()
                for process in (cli, agent):
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
    assert joined == {"cli": LINES, "agent": LINES, "sse": LINES, "client": LINES}
    await watching.unsubscribe()

    events = await wait_for_end(engine, "paced")
    assert type(events[-1]).__name__ == "RunCompleted"
    later = playbook_cli("logs", "paced", "--json", env=engine_env)
    stored = [json.loads(line) for line in later.stdout.splitlines()]
    assert [s["text"] for s in stored if s["type"] == "OutputLine"] == LINES
    assert [(s["type"], s["step_id"], s["attempt"]) for s in stored][-1] == ("OutputEnded", "emit", 1)
    assert [s["seq"] for s in stored] == sorted(s["seq"] for s in stored)


async def test_the_logs_stream_is_limited_by_age_size_and_lines_per_attempt(engine) -> None:
    info = await engine.nc.jetstream().stream_info(subjects.LOGS_STREAM)
    assert info.config.subjects == [subjects.OUTPUT_SUBJECTS]
    assert (info.config.max_age, info.config.max_bytes) == (MAX_AGE_SECONDS, LOGS_MAX_BYTES)
    assert info.config.max_msgs_per_subject == MAX_LINES_PER_ATTEMPT + 2
    assert info.config.discard == "old"


async def test_a_step_that_prints_nothing_still_ends_and_an_unknown_run_is_refused(engine, engine_env) -> None:
    reply = await engine.send(StartRun(run_id="quiet", playbook=playbook_yaml(
        [{"id": "silent", "action": "shell", "args": {"command": "true"}, "timeout_seconds": 5}])))
    await wait_for_end(engine, reply.run_id)
    followed = [item async for _, item in engine.logs("quiet", follow=True)]
    assert [(type(i).__name__, i.step_id, i.attempt, i.lines) for i in followed] == [("OutputEnded", "silent", 1, 0)]
    assert [item async for _, item in engine.logs("quiet", "silent")] == followed
    unknown = playbook_cli("logs", "nope", env=engine_env)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "no run with id 'nope'")
    bad = playbook_cli("logs", "quiet", "a.b", env=engine_env)
    assert bad.returncode == 2 and "step id 'a.b' must start with a letter" in bad.stderr
    no_step = playbook_cli("logs", "quiet", "loud", env=engine_env)           # said, not an empty answer
    assert no_step.returncode == 2 and "run quiet has no step 'loud'; its steps: silent" in no_step.stderr
    no_attempt = playbook_cli("logs", "quiet", "silent", "--attempt", "9", env=engine_env)
    assert no_attempt.returncode == 2 and "step silent of run quiet has had 1 attempt(s), not 9" in no_attempt.stderr


async def test_logs_end_with_what_the_rollback_actions_printed(engine, engine_env) -> None:
    """A rollback's output is in its StepRolledBack event, not streamed: `logs` prints it after the steps' lines."""
    reply = await engine.send(StartRun(run_id="undone", playbook=playbook_yaml([
        {"id": "migrate", "action": "shell", "args": {"command": "echo migrated"}, "timeout_seconds": 5,
         "rollback": [{"action": "shell", "args": {"command": "echo restored; echo from backup >&2"},
                       "timeout_seconds": 5}]},
        {"id": "verify", "action": "shell", "args": {"command": "exit 3"}, "timeout_seconds": 5,
         "depends_on": ["migrate"]}], on_failure="rollback")))
    assert type((await wait_for_end(engine, reply.run_id))[-1]).__name__ == "RollbackCompleted"

    step = playbook_cli("logs", "undone", "migrate", env=engine_env)
    assert step.stdout.splitlines() == ["migrated", "rollback action 1:", "  | restored", "  ! from backup"]
    run = playbook_cli("logs", "undone", env=engine_env)
    assert run.stdout.splitlines() == ["migrate#1 migrated", "migrate#rollback action 1:",
                                       "migrate#rollback   | restored", "migrate#rollback   ! from backup"]
    as_json = [json.loads(line) for line in
               playbook_cli("logs", "undone", "--json", env=engine_env).stdout.splitlines()]
    assert as_json[-1] == {"type": "RollbackOutput", "run_id": "undone", "step_id": "migrate", "attempt": 1,
                           "actions": [{"returncode": 0, "stdout": "restored", "stderr": "from backup"}]}
    one_attempt = playbook_cli("logs", "undone", "migrate", "--attempt", "1", env=engine_env)
    assert one_attempt.stdout.splitlines() == ["migrated"]          # an attempt asked for: that attempt's lines


async def test_a_viewer_of_the_playbook_reads_its_runs_logs_and_a_viewer_of_another_is_refused(
        engine, web_server) -> None:
    reply = await engine.send(StartRun(playbook=playbook_yaml(
        [{"id": "say", "action": "shell", "args": {"command": "echo one; echo two"}, "timeout_seconds": 5}],
        name="printing")))
    await wait_for_end(engine, reply.run_id)
    vic = await person(engine, "vic", "viewer:printing")
    eve = await person(engine, "eve", "viewer:billing-*")
    url = f"{web_server.url}/api/runs/{reply.run_id}/logs/stream"
    async with aiohttp.ClientSession(headers=vic.headers()) as http, http.get(url) as response:
        seen = await read_until(response, lambda m, _: m.event == "log")
    assert [(m.event, m.data.get("text") if m.event == "live" else None) for m in seen[:3]] == [
        ("live", "one"), ("live", "two"), ("end", None)]
    async with aiohttp.ClientSession(headers=eve.headers()) as http, http.get(url) as response:
        assert response.status == 403
    assert [(r.principal, r.action) for r in await refusals(engine.nc)][-1:] == [("eve", "read")]

    async with aiohttp.ClientSession(headers={**vic.headers(), "Last-Event-ID": str(seen[0].id)}) as http:
        async with http.get(url) as response:                     # a reconnect after line one: the rest, once each
            again = await read_until(response, lambda m, _: m.event == "log")
        assert [(m.event, m.data) for m in again] == [(m.event, m.data) for m in seen[1:]]
        async with http.get(url, headers={"Last-Event-ID": "one.two"}) as response:
            assert response.status == 400


async def _all(items):
    return [item async for item in items]


async def _cli_line(cli: asyncio.subprocess.Process) -> str:
    assert cli.stdout is not None
    return (await asyncio.wait_for(cli.stdout.readline(), 20)).decode().rstrip("\n")

