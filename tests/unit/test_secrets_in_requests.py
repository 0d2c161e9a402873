"""A secret goes only to the hosts it allows: a request that would carry it elsewhere never connects."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.executor.actions import close_http_session, run_action
from services.executor.processes import ProcessRules
from services.executor.scope import enter_attempt
from services.playbook.interpolate import Context, resolve
from services.secrets import SecretSource
from tests.helpers import noop, started

TOKEN = "tok-0123456789abcdef"


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A bare TCP socket that counts every connection made to it."""
    connections: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def api() -> AsyncIterator[TestServer]:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"key": request.headers.get("X-Api-Key")})

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(request.query["to"])

    app = web.Application()
    app.add_routes([web.get("/hello", hello), web.get("/away", away)])
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()
    await close_http_session()


def attempt_holding(hosts: str | None) -> Context:
    """The context of a step attempt whose playbook uses ${secret:TOKEN}, allowed to `hosts` (None: anywhere)."""
    environ = {"PLAYBOOK_SECRET_TOKEN": TOKEN} | ({"PLAYBOOK_SECRET_TOKEN_ALLOWED_HOSTS": hosts} if hosts else {})
    ctx = Context()
    enter_attempt(ctx, started("r1", [noop("a", args={"outputs": {"t": "${secret:TOKEN}"}})]),
                  SecretSource(environ), ProcessRules())
    return ctx


@pytest.mark.parametrize("where", ["headers", "url", "params", "json", "data"])
async def test_a_secret_bound_elsewhere_is_refused_before_any_connection(listener, where) -> None:
    port, connections = listener
    ctx = attempt_holding("api.example.com")
    carried = {"headers": {"headers": {"Authorization": "Bearer ${secret:TOKEN}"}},
               "url": {"url": f"http://127.0.0.1:{port}/x?token=${{secret:TOKEN}}"},
               "params": {"params": {"t": "${secret:TOKEN}"}},
               "json": {"method": "POST", "json": {"deep": ["${secret:TOKEN}"]}},
               "data": {"method": "POST", "data": "token=${secret:TOKEN}"}}[where]
    args = resolve({"url": f"http://127.0.0.1:{port}/x", **carried}, ctx)
    result = await run_action("http_request", args, timeout=5)
    assert (result.ok, result.category) == (False, "configuration")
    assert "secret 'TOKEN' may be sent only to api.example.com" in result.error and "127.0.0.1" in result.error
    assert TOKEN not in result.error
    assert connections == []


async def test_a_secret_goes_to_a_host_it_allows(api) -> None:
    ctx = attempt_holding("localhost, 127.0.0.1")
    args = resolve({"url": str(api.make_url("/hello")), "headers": {"X-Api-Key": "${secret:TOKEN}"}}, ctx)
    result = await run_action("http_request", args, timeout=5)
    assert result.ok and result.outputs["json"] == {"key": "***"}      # it arrived; the echo is redacted


async def test_a_redirect_to_a_host_the_secret_does_not_allow_is_not_followed(api, listener) -> None:
    port, connections = listener
    ctx = attempt_holding("127.0.0.1")
    away = api.make_url("/away").with_query(to=f"http://localhost:{port}/collect")
    args = resolve({"url": str(away), "headers": {"X-Api-Key": "${secret:TOKEN}"}}, ctx)
    result = await run_action("http_request", args, timeout=5)
    assert result.category == "configuration" and "would carry it to localhost" in result.error
    assert connections == []


async def test_a_request_without_secrets_is_not_checked(api) -> None:
    attempt_holding("api.example.com")
    result = await run_action("http_request", {"url": str(api.make_url("/hello"))}, timeout=5)
    assert result.ok
