"""The agents' door under arguments and callers it should refuse: each answer a sentence, nothing read or held
that the caller's token does not allow, and nothing that stalls the engine beside it.

Same shape as test_mcp.py: the server in this process over a real engine, the SDK's client talking to it.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from mcp import Client

from app.root import Running, serve
from events.commands import StartRun
from events.run import StepStarted
from tests.helpers import BesideTheLoop, person, playbook_yaml, refusals
from ui.catalog_client import CatalogClient
from ui.client import EngineClient
from ui.identity_client import IdentityClient
from ui.mcp import playbooks
from ui.mcp.server import build_server

pytestmark = pytest.mark.integration

QUICK = playbook_yaml([{"id": "a", "action": "noop"}], name="quick")
ENDLESS = playbook_yaml([{"id": "wait", "action": "shell", "args": {"command": "sleep 300"},
                          "timeout_seconds": 600}], name="endless")


@contextlib.asynccontextmanager
async def agent(client: EngineClient) -> AsyncIterator[Client]:
    async with Client(build_server(EngineClient(client.nc, client.caller.credential, door="mcp"))) as session:
        yield session


async def refused(session: Client, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_a_catalog_start_with_a_run_id_that_is_no_subject_token_is_a_bad_request(engine) -> None:
    """It crashed in the tool (a ValidationError the SDK reports with no text): the agent read no sentence."""
    await CatalogClient(engine).publish(QUICK, version="1")
    alice = await person(engine, "alice", "operator")
    async with agent(alice) as session:
        for run_id in ("a.b", "*", "x" * 65):
            said = await refused(session, "execute_playbook_advanced", playbook="quick@1", run_id=run_id)
            assert "(bad_request)" in said and "run_id" in said, said


async def test_a_watched_start_ends_once_its_token_is_revoked(engine) -> None:
    """A watch outlives the call's first check, as an SSE stream does: revoked, it stops telling the run."""
    alice = await person(engine, "alice", "operator")
    assert alice.caller.credential is not None
    async with agent(alice) as session:
        watching = asyncio.create_task(session.call_tool("execute_playbook_advanced", {
            "playbook_yaml": ENDLESS, "run_id": "watched", "wait": True, "wait_seconds": 600}))
        async for _, event in engine.follow("watched"):
            if isinstance(event, StepStarted):
                break
        await IdentityClient(engine.nc, engine.caller.credential).revoke(alice.caller.credential.split("_")[1])
        result = await asyncio.wait_for(watching, 15)
    assert result.is_error and "(unauthenticated)" in " ".join(getattr(c, "text", "") for c in result.content)


async def test_validation_runs_beside_the_event_loop_not_on_it(engine, monkeypatch) -> None:
    """Under `playbook up` the door shares its loop with every service: a large playbook's validation held them all
    (seconds of no answer from anything). The check below returns only once the loop has run meanwhile."""
    beside = BesideTheLoop(monkeypatch, playbooks, "validate_playbook")
    vera = await person(engine, "vera", "viewer")
    async with agent(vera) as session:
        validating = asyncio.create_task(session.call_tool("validate_playbook_advanced", {"playbook_yaml": QUICK}))
        await beside.let_the_loop_run()
        result = await asyncio.wait_for(validating, 15)
    assert beside.waited == [True], "the loop stood still while the playbook was checked"
    assert not result.is_error and result.structured_content is not None and result.structured_content["valid"]


async def test_a_playbook_file_that_is_no_regular_file_is_refused_without_reading_it(engine, tmp_path) -> None:
    """/dev/zero was read until memory ran out, a FIFO waited forever for a writer (with the loop), /dev/stdin
    would eat the stdio transport's own input: only a regular file is a playbook."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    unblock = threading.Timer(10, lambda: fifo.write_text("name: x\nsteps: [{id: a, action: noop}]\n"))
    unblock.start()           # so that the unfixed door, blocked on opening it, comes back and fails the test
    vera = await person(engine, "vera", "viewer")
    try:
        async with agent(vera) as session:
            for path in (str(fifo), "/dev/null"):
                said = await refused(session, "validate_playbook_advanced", playbook_file=path)
                assert "(bad_request)" in said and "not a regular file" in said, said
    finally:
        unblock.cancel()


async def test_an_attempt_without_its_step_is_refused_not_shown_as_running_lines(engine) -> None:
    """Lines of attempt 1 came back labelled `running` when attempt 2 was asked for with no step; the CLI refuses
    an attempt without a step, and so does the tool."""
    alice = await person(engine, "alice", "operator")
    run_id = (await alice.send(StartRun(playbook=playbook_yaml(
        [{"id": "say", "action": "shell", "args": {"command": "echo hi"}, "timeout_seconds": 10}], name="say")))).run_id
    assert run_id is not None
    async for _, _event in engine.follow(run_id):
        pass
    async with agent(alice) as session:
        assert "(bad_request)" in await refused(session, "get_execution_logs", run_id=run_id, attempt=2)
        assert "greater than or equal" in await refused(session, "get_execution_logs", run_id=run_id,
                                                        step_id="say", attempt=0)


async def test_a_revoked_agents_tries_are_recorded_at_the_mcp_door(engine) -> None:
    """The read check asks the identity service, which recorded the refusal as `list_tokens at nats`: an audit of
    the agents' door found nothing of it."""
    vera = await person(engine, "vera", "viewer", agent=True)
    assert vera.caller.credential is not None
    await IdentityClient(engine.nc, engine.caller.credential).revoke(vera.caller.credential.split("_")[1])
    async with agent(vera) as session:
        assert "(unauthenticated)" in await refused(session, "list_active_executions")
    assert [r.door for r in await refusals(engine.nc)] == ["mcp"]


async def test_over_http_a_handshake_holds_nothing_and_a_call_needs_only_its_token(engine, settings) -> None:
    """Every handshake opened a session the server kept for 30 minutes, without a token: 10,000 of them (a minute
    of anonymous requests, 400 MB) and every agent on the 2025 protocol was answered 503 for half an hour.
    A request's token is all a call needs, so the door keeps no sessions."""
    stop, opened = asyncio.Event(), asyncio.Future[str]()

    async def ready(running: Running) -> None:
        opened.set_result(running.doors["mcp"].url)

    vera = await person(engine, "vera", "viewer", agent=True)
    serving = asyncio.create_task(serve(settings, (), ["mcp"], ready=ready, stop=stop))
    legacy = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
    try:
        url = await asyncio.wait_for(opened, 15)
        async with aiohttp.ClientSession(headers=legacy) as http:
            async with http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "a", "version": "1"}}
                    }) as answer:
                assert answer.status == 200 and "mcp-session-id" not in answer.headers
            async with http.post(url, headers={"Authorization": f"Bearer {vera.caller.credential}"}, json={
                    "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "list_active_executions", "arguments": {}}}) as answer:
                assert answer.status == 200 and '"runs":[]' in (await answer.text()).replace(" ", "")
    finally:
        stop.set()
        await asyncio.wait_for(serving, 15)


async def test_over_http_failed_tokens_are_limited_per_address_as_at_the_web(engine, settings) -> None:
    """Each bad token an anonymous caller sent was checked and recorded, without end: PB_ACCESS is bounded, so a
    flood pushed the refusals worth reading out of it. Past ten, an address waits, and nothing more is recorded."""
    stop, opened = asyncio.Event(), asyncio.Future[str]()

    async def ready(running: Running) -> None:
        opened.set_result(running.doors["mcp"].url)

    serving = asyncio.create_task(serve(settings, (), ["mcp"], ready=ready, stop=stop))
    guessed = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18",
               "Authorization": "Bearer pbt_0123456789abcdef_" + "A" * 43}
    said = []
    try:
        url = await asyncio.wait_for(opened, 15)
        async with aiohttp.ClientSession(headers=guessed) as http:
            for n, tool in enumerate(["list_active_executions", "control_execution"] * 8):
                arguments = {"run_id": "r1", "action": "pause"} if tool == "control_execution" else {}
                async with http.post(url, json={"jsonrpc": "2.0", "id": n, "method": "tools/call",
                                                "params": {"name": tool, "arguments": arguments}}) as answer:
                    said.append(await answer.text())
    finally:
        stop.set()
        await asyncio.wait_for(serving, 15)
    assert all("(unauthenticated)" in text for text in said[:10]), said[:10]
    assert all("(too_many_failures)" in text for text in said[10:]), said[10:]
    assert len(await refusals(engine.nc)) == 10
