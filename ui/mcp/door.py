"""Serving the MCP server: stdio for a local agent host, streamable HTTP for agents that connect.

Both use the client login to NATS, as the CLI does. `playbook mcp` is the stdio edge and
`playbook mcp --http PORT` the HTTP one; `playbook up` opens the HTTP door too when
`PLAYBOOK_MCP_PORT` is set (the `mcp` line of DOORS in app/root.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn
from nats.aio.client import Client as NATS

from services.errors import EngineUnavailable
from services.identity.credentials import NatsRole
from services.identity.setup import Identity
from services.settings import Settings, url_to_show
from ui.client import EngineClient
from ui.mcp.playbooks import LocalFiles
from ui.mcp.server import build_server

MCP_PATH = "/mcp"


class HttpDoor:
    """The MCP server on streamable HTTP, each request acting as its own bearer token."""

    def __init__(self, nc: NATS, host: str, port: int) -> None:
        # The SDK logs at INFO once per request ("Terminating session: None", a refused tool call): an agent
        # polling every few seconds wrote tens of thousands of lines a day into `up`'s log. Its warnings and errors
        # still show; a refused command is in the audit, a refused read logged by our access check.
        logging.getLogger("mcp").setLevel(logging.WARNING)
        app = build_server(EngineClient(nc, door="mcp"), per_request=True).streamable_http_app(
            streamable_http_path=MCP_PATH, host=host, stateless_http=True)
        self.nc = nc
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> HttpDoor:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:          # uvicorn says it is listening by this flag only
            if self.task.done():
                self.task.result()
                raise EngineUnavailable("the MCP server stopped while starting")
            await asyncio.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}{MCP_PATH}"

    async def serve_until_stopped(self) -> None:
        assert self.task is not None
        await self.task

    async def close(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.nc.close()


async def client_connection(settings: Settings) -> NATS:
    """NATS as the client login (the CLI's): commands and reads, never the engine's events."""
    url = settings.engine_url()
    try:     # as the engine's own connections: any server of a cluster's URL, left when it stops answering
        return await settings.connect("playbook-mcp", role="client", first_tries=2)
    except Exception as err:  # noqa: BLE001 - any failure to connect means the same to a user
        raise EngineUnavailable(f"cannot reach NATS at {url_to_show(url)} ({err or type(err).__name__}): "
                                "is `playbook up` running?") from None


async def start_mcp(settings: Settings, identity: Identity, login: NatsRole = "client") -> HttpDoor:
    """The door `playbook up` opens on PLAYBOOK_MCP_PORT (loopback): HTTP, every request with its own token. It
    connects as a client whatever the process's `login`: its callers' tokens decide what it may do."""
    return await HttpDoor(await client_connection(settings), "127.0.0.1", settings.mcp_port or 0).open()


async def serve_http(settings: Settings, host: str, port: int) -> None:
    door = await HttpDoor(await client_connection(settings), host, port).open()
    print(f"MCP over streamable HTTP on {door.url} (each request: Authorization: Bearer <token>)", flush=True)
    try:
        await door.serve_until_stopped()
    finally:
        await door.close()


async def serve_stdio(settings: Settings, credential: str) -> None:
    nc = await client_connection(settings)
    try:
        files = LocalFiles(hidden=tuple(p.resolve() for p in (settings.home, settings.secrets.file) if p))
        await build_server(EngineClient(nc, credential, door="mcp"), files=files).run_stdio_async()
    finally:
        await nc.close()
