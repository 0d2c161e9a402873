"""Resources an agent can read: a run's events and view, and the playbook catalog where the engine has one."""
from __future__ import annotations

import importlib
import json

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from projections.run_view import run_view
from ui.cli.render import event_json
from ui.mcp.access import Access, Refused, answered

CATALOG_CLIENT = "ui.catalog_client"      # the catalog's client, where this engine has one


def register(server: MCPServer, access: Access) -> None:
    @server.resource("playbook://runs/{run_id}/events", mime_type="application/x-ndjson")
    @answered(ResourceError)
    async def run_events(run_id: str, ctx: Context) -> str:
        """Every stored event of the run, one JSON object per line, with its stream sequence."""
        await access.readable_run(access.caller(ctx), run_id)
        return "".join(event_json(seq, event) + "\n" for seq, event in await access.client.events(run_id))

    @server.resource("playbook://runs/{run_id}/view", mime_type="application/json")
    @answered(ResourceError)
    async def run_view_resource(run_id: str, ctx: Context) -> str:
        """The run as the dashboard shows it: status, plan waves, every step with its gate, retry and rollback."""
        run = await access.readable_run(access.caller(ctx), run_id)
        return json.dumps(run_view(run), default=str)

    @server.resource("playbook://catalog/{name}", mime_type="application/json")
    @answered(ResourceError)
    async def catalog(name: str, ctx: Context) -> str:
        """A catalogued playbook's versions, oldest first (any verified caller may list them)."""
        await access.principal(access.caller(ctx))
        try:
            module = importlib.import_module(CATALOG_CLIENT)
        except ModuleNotFoundError:
            raise Refused("this engine has no playbook catalog yet", "unknown_playbook") from None
        return json.dumps([module.version_json(v) for v in await module.CatalogClient(access.client).versions(name)])
