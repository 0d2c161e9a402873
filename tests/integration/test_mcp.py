"""Agents drive the engine through the MCP server: every tool as its principal, and every refusal in its words.

The server runs in this process over a real engine and nats-server; the SDK's own client
talks to it (in-process dispatch), each server holding one person's or agent's token.
"""
from __future__ import annotations

import asyncio
import json
import logging
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from app.root import Running, serve
from events.commands import StartRun
from events.run import ApprovalRequested, StepStarted
from tests.helpers import person, playbook_yaml, refusals, until, wait_for_end
from ui.client import EngineClient
from ui.identity_client import IdentityClient
from ui.insights import LearningClient
from ui.mcp.playbooks import MAX_FINDINGS
from ui.mcp.server import build_server

pytestmark = pytest.mark.integration

GATED = playbook_yaml([
    {"id": "build", "action": "shell", "args": {"command": "printf 'one\\ntwo\\nthree\\n'"}, "timeout_seconds": 10},
    {"id": "deploy", "action": "noop", "depends_on": ["build"],
     "approval_gate": {"message": "Ship it?", "required_approvers": ["bob"]}},
], name="ship")
SLOW = playbook_yaml([{"id": "wait", "action": "shell", "args": {"command": "sleep 30"}, "timeout_seconds": 60}],
                     name="slow")


@contextlib.asynccontextmanager
async def agent(client: EngineClient) -> AsyncIterator[Client]:
    """An MCP session with a server acting as this client's token."""
    async with Client(build_server(EngineClient(client.nc, client.caller.credential, door="mcp"))) as session:
        yield session


async def call(session: Client, tool: str, progress: list[Any] | None = None, **arguments: Any) -> dict[str, Any]:
    async def heard(done: float, total: float | None, message: str | None) -> None:
        assert progress is not None
        progress.append((done, total, message))
    result = await session.call_tool(tool, arguments, progress_callback=heard if progress is not None else None)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def refused(session: Client, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture
async def cast(engine: EngineClient) -> dict[str, EngineClient]:
    """alice operates, bob approves (the gate names him), vera only views, otto views other playbooks."""
    return {"alice": await person(engine, "alice", "operator"), "bob": await person(engine, "bob", "approver"),
            "vera": await person(engine, "vera", "viewer", agent=True),
            "otto": await person(engine, "otto", "viewer:billing-*", agent=True)}


async def test_the_tools_keep_their_names_and_say_which_only_read(engine, cast) -> None:
    async with agent(cast["vera"]) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == {"execute_playbook_advanced", "control_execution", "get_execution_status",
                          "list_active_executions", "approve_execution_step", "get_execution_logs",
                          "get_execution_metrics", "validate_playbook_advanced", "get_playbook_insights"}
    changing = {"execute_playbook_advanced", "control_execution", "approve_execution_step"}
    for name, tool in tools.items():
        assert tool.annotations is not None and tool.output_schema is not None
        assert tool.annotations.read_only_hint is (name not in changing)
        assert tool.annotations.destructive_hint is (name in changing)


async def test_an_agent_starts_a_gated_run_hears_its_progress_and_the_approver_lets_it_finish(engine, cast) -> None:
    progress: list[Any] = []
    async with agent(cast["alice"]) as alice:
        started = await call(alice, "execute_playbook_advanced", progress, playbook_yaml=GATED, wait=True)
    assert started["status"] == "waiting_approval" and not started["finished"]
    assert [g["step_id"] for g in started["waiting_gates"]] == ["deploy"]
    assert started["waiting_gates"][0]["message"] == "Ship it?"
    assert progress and progress[-1][2].startswith("deploy: ") and (1, 2) in [(d, t) for d, t, _ in progress]

    async with agent(cast["bob"]) as bob:
        decided = await call(bob, "approve_execution_step", run_id=started["run_id"], step_id="deploy",
                             comment="looks good")
    assert "ApprovalGiven" in decided["events"]
    await wait_for_end(engine, started["run_id"])
    async with agent(cast["vera"]) as vera:
        status = await call(vera, "get_execution_status", run_id=started["run_id"])
    assert status["status"] == "completed" and [s["status"] for s in status["steps"]] == ["succeeded"] * 2


async def test_who_may_not_gets_the_engines_sentence(engine, cast, caplog) -> None:
    run_id = (await cast["alice"].send(StartRun(playbook=GATED))).run_id
    async for _, event in engine.follow(run_id):
        if isinstance(event, ApprovalRequested):
            break
    async with agent(cast["vera"]) as vera:
        assert "vera may not start ship" in await refused(vera, "execute_playbook_advanced", playbook_yaml=GATED)
        assert "vera may not cancel run" in await refused(vera, "control_execution", run_id=run_id, action="cancel")
        assert "vera may not approve" in await refused(vera, "approve_execution_step", run_id=run_id,
                                                        step_id="deploy")
    async with agent(cast["alice"]) as alice:    # an operator, not an approver
        assert "alice may not approve" in await refused(alice, "approve_execution_step", run_id=run_id,
                                                         step_id="deploy")
    async with agent(await person(engine, "bob", "approver", agent=True)) as bobs_bot:   # bob's, but an agent's
        assert "bob may not approve: it is an agent" in await refused(bobs_bot, "approve_execution_step",
                                                                      run_id=run_id, step_id="deploy")
    assert (await engine.run(run_id)).steps["deploy"].gate.status == "requested"
    async with agent(cast["otto"]) as otto:      # may read billing-* only
        for tool, args in (("get_execution_status", {}), ("get_execution_logs", {}),
                           ("get_execution_metrics", {})):
            assert "otto may not read run" in await refused(otto, tool, run_id=run_id, **args)
        assert "otto may not read" in await refused(otto, "get_execution_status", run_id=run_id)
        assert (await call(otto, "list_active_executions"))["runs"] == []
    # A refused read is recorded nowhere else (PB_ACCESS is the engine's and a web server's): the log says it.
    logged = [r.getMessage() for r in caplog.records if r.name == "ui.mcp.access" and r.levelno == logging.WARNING]
    assert any(f"otto refused a read of {run_id}" in line for line in logged), logged


async def test_an_operator_pauses_resumes_and_cancels_with_a_reason(engine, cast) -> None:
    run_id = (await cast["alice"].send(StartRun(playbook=SLOW))).run_id
    async for _, event in engine.follow(run_id):
        if isinstance(event, StepStarted):
            break
    async with agent(cast["alice"]) as alice:
        assert (await call(alice, "control_execution", run_id=run_id, action="pause", reason="lunch"))["events"] \
            == ["RunPaused"]
        assert (await call(alice, "control_execution", run_id=run_id, action="pause"))["events"] == []
        assert (await call(alice, "control_execution", run_id=run_id, action="resume"))["events"] == ["RunResumed"]
        active = await call(alice, "list_active_executions")
        assert [r["run_id"] for r in active["runs"]] == [run_id] and active["runs"][0]["playbook"] == "slow"
        await call(alice, "control_execution", run_id=run_id, action="cancel", reason="not today")
        await wait_for_end(engine, run_id)
        status = await call(alice, "get_execution_status", run_id=run_id)
        assert status["status"] == "cancelled"
        assert (await call(alice, "list_active_executions"))["runs"] == []
        assert [r["run_id"] for r in (await call(alice, "list_active_executions", include_finished=True))["runs"]] \
            == [run_id]
        assert "no run with id 'no-such-run'" in await refused(alice, "control_execution", run_id="no-such-run",
                                                               action="rollback")


async def test_continue_on_failure_lets_an_agents_run_go_past_a_failed_step_and_is_recorded(engine, cast) -> None:
    patching = playbook_yaml([{"id": f"host{n}", "action": "shell", "args": {"command": f"exit {int(n == 1)}"},
                               "timeout_seconds": 10} for n in range(1, 4)], name="patch")   # stops at a failure
    async with agent(cast["alice"]) as alice:
        went_on = await call(alice, "execute_playbook_advanced", playbook_yaml=patching, continue_on_failure=True,
                             wait=True)
        stopped = await call(alice, "execute_playbook_advanced", playbook_yaml=patching, wait=True)
        status = await call(alice, "get_execution_status", run_id=went_on["run_id"])
    assert went_on["status"] == "failed" and stopped["status"] == "failed"
    assert [s["status"] for s in status["steps"]] == ["failed", "succeeded", "succeeded"]
    assert [s.status for s in (await engine.run(stopped["run_id"])).steps.values()] == ["failed", "pending", "pending"]
    first = (await engine.events(went_on["run_id"]))[0][1]
    assert (first.on_failure, first.actor) == ("continue", "alice")


async def test_an_agent_may_start_a_run_that_waits_for_a_person_before_every_step(engine, cast) -> None:
    two = playbook_yaml([{"id": "drain", "action": "noop"}, {"id": "patch", "action": "noop"}], name="ship-patch")
    async with agent(cast["alice"]) as alice, agent(cast["bob"]) as bob:
        started = await call(alice, "execute_playbook_advanced", playbook_yaml=two, approval_required=True, wait=True)
        assert (started["status"], [g["step_id"] for g in started["waiting_gates"]]) == ("waiting_approval", ["drain"])
        assert "alice may not approve run" in await refused(
            alice, "approve_execution_step", run_id=started["run_id"], step_id="drain")
        await call(bob, "approve_execution_step", run_id=started["run_id"], step_id="drain")

        async def asking(step_id: str) -> bool:
            run = await engine.run(started["run_id"])
            return run.steps[step_id].gate.status == "requested"
        await until(lambda: asking("patch"), what="the second step's gate")
        await call(bob, "approve_execution_step", run_id=started["run_id"], step_id="patch")
    events = await wait_for_end(engine, started["run_id"])
    assert [type(e).__name__ for e in events].count("ApprovalGranted") == 2
    assert type(events[-1]).__name__ == "RunCompleted" and events[0].approval_required


async def test_logs_by_step_and_attempt_with_a_tail(engine, cast) -> None:
    async with agent(cast["alice"]) as alice:
        run_id = (await call(alice, "execute_playbook_advanced", playbook_yaml=GATED, wait=True))["run_id"]
        every = await call(alice, "get_execution_logs", run_id=run_id, step_id="build", attempt=1)
        tail = await call(alice, "get_execution_logs", run_id=run_id, tail=2)
        none = await call(alice, "get_execution_logs", run_id=run_id, step_id="build", attempt=2)
    assert [line["line"] for line in every["lines"]] == ["one", "two", "three"] and not every["truncated"]
    assert {(x["step_id"], x["attempt"], x["stream"]) for x in every["lines"]} == {("build", 1, "stdout")}
    assert [line["line"] for line in tail["lines"]] == ["two", "three"] and tail["truncated"]
    assert none["lines"] == []


async def test_logs_of_a_step_still_running_are_every_line_printed_so_far(engine, cast, tmp_path) -> None:
    go = tmp_path / "go"
    printing = playbook_yaml([{"id": "migrate", "action": "shell", "timeout_seconds": 60, "args": {
        "command": f"echo first; echo second; while [ ! -e {go} ]; do sleep 0.05; done; echo third"}}], name="live")
    async with agent(cast["alice"]) as alice:
        run_id = (await call(alice, "execute_playbook_advanced", playbook_yaml=printing))["run_id"]

        async def printed() -> list[tuple[str, str]]:
            answer = await call(alice, "get_execution_logs", run_id=run_id, step_id="migrate")
            return [(line["line"], line["phase"]) for line in answer["lines"]]

        async def two_lines() -> list[tuple[str, str]] | None:
            lines = await printed()
            return lines if len(lines) == 2 else None
        assert await until(two_lines, what="two lines while running") == [("first", "running"), ("second", "running")]
        go.touch()
        await wait_for_end(engine, run_id)
        assert await printed() == [("first", "step"), ("second", "step"), ("third", "step")]


async def test_insights_of_what_past_runs_taught_and_a_viewer_of_other_playbooks_refused(engine, cast) -> None:
    quick = playbook_yaml([{"id": "a", "action": "noop"}], name="taught")
    async with agent(cast["alice"]) as alice:
        run_id = (await call(alice, "execute_playbook_advanced", playbook_yaml=quick, wait=True))["run_id"]
        last = max(seq for seq, _ in await engine.events(run_id))
        await LearningClient(engine.nc, engine.headers()).insights(after=last, wait=30)
        taught = await call(alice, "get_playbook_insights", playbook="taught")
    assert [(p["playbook"], p["runs"], [s["step"] for s in p["steps"]]) for p in taught["playbooks"]] == [
        ("taught", 1, ["a"])]
    async with agent(cast["otto"]) as otto:
        assert "otto may not read taught" in await refused(otto, "get_playbook_insights", playbook="taught")


async def test_metrics_of_a_run_and_of_a_playbook(engine, cast) -> None:
    quick = playbook_yaml([{"id": "a", "action": "noop"}, {"id": "b", "action": "noop"}], name="quick")
    async with agent(cast["alice"]) as alice:
        runs = [(await call(alice, "execute_playbook_advanced", playbook_yaml=quick, wait=True)) for _ in range(2)]
        assert all(r["status"] == "completed" and r["finished"] for r in runs)
        one = await call(alice, "get_execution_metrics", run_id=runs[0]["run_id"])
        both = await call(alice, "get_execution_metrics", playbook="quick")
        assert "exactly one of run_id and playbook" in await refused(alice, "get_execution_metrics")
    assert (one["run_id"], one["runs"], one["completed"]) == (runs[0]["run_id"], 1, 1)
    assert (both["runs"], both["completed"], both["success_rate"]) == (2, 2, 1.0)
    assert {s["step"]: s["succeeded"] for s in both["steps"]} == {"a": 2, "b": 2}


async def test_validation_finds_what_the_cli_finds_with_lines_and_columns(engine, cast, tmp_path) -> None:
    broken = "name: broken\nsteps:\n  - id: a\n    action: noop\n    depends_on: [nowhere]\n"
    (tmp_path / "broken.yaml").write_text(broken)
    async with agent(cast["vera"]) as vera:
        found = await call(vera, "validate_playbook_advanced", playbook_yaml=broken)
        from_file = await call(vera, "validate_playbook_advanced", playbook_file=str(tmp_path / "broken.yaml"))
        good = await call(vera, "validate_playbook_advanced", playbook_yaml=GATED)
    assert not found["valid"] and found["errors"] == 1
    finding = next(d for d in found["diagnostics"] if d["severity"] == "error")
    assert (finding["code"], finding["line"], finding["step_id"]) == ("PB203", 5, "a") and finding["column"]
    assert from_file["diagnostics"] == [{**d, "file": str(tmp_path / "broken.yaml")} for d in found["diagnostics"]]
    assert good["valid"]

    vera = cast["vera"]
    assert vera.caller.credential is not None
    token_id = vera.caller.credential.split("_")[1]
    await IdentityClient(engine.nc, engine.caller.credential).revoke(token_id, "left the team")
    async with agent(vera) as revoked:
        assert "(unauthenticated)" in await refused(revoked, "validate_playbook_advanced", playbook_yaml=GATED)
    assert (await refusals(engine.nc))[-1].door == "mcp"      # the audit says which door it was turned away at


async def test_a_validation_of_thousands_of_findings_answers_the_most_severe_and_says_how_many_more(cast) -> None:
    """An agent reads every finding into its context: 20,000 unnamed steps were a 5 MB answer of infos."""
    steps = [{"id": f"s{i}", "action": "noop"} for i in range(400)] + [{"id": "bad", "action": "nope"}]
    async with agent(cast["vera"]) as vera:
        found = await call(vera, "validate_playbook_advanced", playbook_yaml=playbook_yaml(steps))
    assert (found["valid"], found["errors"], len(found["diagnostics"])) == (False, 1, MAX_FINDINGS)
    assert found["diagnostics"][0]["step_id"] == "bad" and found["left_out"] >= 401 - MAX_FINDINGS


async def test_a_playbook_the_catalog_does_not_hold_is_a_clear_error(engine, cast) -> None:
    async with agent(cast["alice"]) as alice:
        text = await refused(alice, "execute_playbook_advanced", playbook="deploy@3")
        assert "(unknown_playbook)" in text and "deploy@3" in text
        assert "give one of" in await refused(alice, "execute_playbook_advanced", playbook="deploy@3",
                                             playbook_yaml=GATED)


async def test_a_runs_events_and_view_are_resources_for_who_may_read_them(engine, cast) -> None:
    async with agent(cast["alice"]) as alice:
        run_id = (await call(alice, "execute_playbook_advanced", playbook_yaml=GATED, wait=True))["run_id"]
        events = await alice.read_resource(f"playbook://runs/{run_id}/events")
        view = await alice.read_resource(f"playbook://runs/{run_id}/view")
    lines = events.contents[0].text.splitlines()
    assert len(lines) == len(await engine.events(run_id)) and '"type":"RunStarted"' in lines[0]
    assert '"status": "waiting_approval"' in view.contents[0].text
    async with agent(cast["otto"]) as otto:
        with pytest.raises(Exception, match="otto may not read"):
            await otto.read_resource(f"playbook://runs/{run_id}/view")


async def test_a_run_id_that_is_a_wildcard_reads_nothing(engine, cast) -> None:
    """`*` as a run id matched every run's subjects: a reader of one playbook's oldest run read every run."""
    async with agent(cast["alice"]) as alice:
        await call(alice, "execute_playbook_advanced", playbook_yaml=GATED, wait=True)
    async with agent(cast["vera"]) as vera:
        for run_id in ("*", ">", "a.b"):
            for tool in ("get_execution_status", "get_execution_logs"):
                assert "(bad_request): run id" in await refused(vera, tool, run_id=run_id), (tool, run_id)
            with pytest.raises(Exception, match="bad_request"):
                await vera.read_resource(f"playbook://runs/{run_id}/events")
        run_id = (await call(vera, "list_active_executions"))["runs"][0]["run_id"]
        assert "(bad_request): step id" in await refused(vera, "get_execution_logs", run_id=run_id, step_id="*")


async def test_numbers_out_of_range_are_refused_and_the_ranges_are_in_the_schema(engine, cast) -> None:
    async with agent(cast["alice"]) as alice:
        tools = {t.name: t.input_schema["properties"] for t in (await alice.list_tools()).tools}
        assert (tools["list_active_executions"]["limit"]["minimum"], tools["list_active_executions"]["limit"]["maximum"]
                ) == (1, 1000)
        assert tools["execute_playbook_advanced"]["wait_seconds"]["maximum"] == 3600
        for tool, arguments in (("list_active_executions", {"limit": 0}), ("list_active_executions", {"limit": -5}),
                                ("get_execution_logs", {"run_id": "r1", "tail": -1}),
                                ("get_execution_metrics", {"playbook": "ship", "last_runs": -1}),
                                ("execute_playbook_advanced", {"playbook_yaml": GATED, "wait_seconds": 99999})):
            said = await refused(alice, tool, **arguments)
            assert "greater than or equal" in said or "less than or equal" in said, (tool, said)


async def test_over_http_each_request_acts_as_its_own_bearer_token(engine, cast, settings, caplog) -> None:
    """The door `playbook up` opens with PLAYBOOK_MCP_PORT (the `mcp` line of DOORS), as `playbook mcp --http`.
    It logs no line per request: an agent polling every few seconds wrote tens of thousands a day into `up`'s log."""
    caplog.set_level(logging.INFO)
    stop, opened = asyncio.Event(), asyncio.Future[str]()

    async def ready(running: Running) -> None:
        opened.set_result(running.doors["mcp"].url)

    serving = asyncio.create_task(serve(settings, (), ["mcp"], ready=ready, stop=stop))
    try:
        url = await asyncio.wait_for(opened, 15)

        def session_with(headers: dict[str, str]) -> Client:
            return Client(streamable_http_client(url, http_client=create_mcp_http_client(headers=headers)))

        async with session_with({}) as nobody:
            assert "(unauthenticated)" in await refused(nobody, "list_active_executions")
        async with session_with({"Authorization": f"Bearer {cast['vera'].caller.credential}"}) as vera:
            assert (await call(vera, "list_active_executions"))["runs"] == []
            assert "vera may not start" in await refused(vera, "execute_playbook_advanced", playbook_yaml=GATED)
            assert "only over stdio" in await refused(vera, "validate_playbook_advanced", playbook_file="/etc/passwd")
        chatter = [r.getMessage() for r in caplog.records if r.name.startswith("mcp.") and r.levelno < logging.WARNING]
        assert chatter == []
    finally:
        stop.set()
        await asyncio.wait_for(serving, 15)


async def test_an_agent_starts_a_catalogued_version_and_reads_its_versions(engine, cast) -> None:
    """Only where the engine has the playbook catalog (ui/catalog_client.py)."""
    catalog = pytest.importorskip("ui.catalog_client")
    await catalog.CatalogClient(engine).publish(GATED, version="1.0")
    async with agent(cast["alice"]) as alice:
        run = await call(alice, "execute_playbook_advanced", playbook="ship@1.0", wait=True)
        versions = await alice.read_resource("playbook://catalog/ship")
    assert run["status"] == "waiting_approval"
    assert [v["id"] for v in json.loads(versions.contents[0].text)] == ["ship@1.0"]
