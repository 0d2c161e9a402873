"""`playbook mcp`: the MCP server for agents, over stdio (for a local agent host) or streamable HTTP.

Over stdio it acts as `$PLAYBOOK_TOKEN` (else the local admin's token); over HTTP every
request acts as its own `Authorization: Bearer` token. The `mcp` package is imported only
here, when the command runs, so the rest of the CLI starts as fast as before.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from services.errors import AccessDenied
from ui.cli.connect import caller_credential

if TYPE_CHECKING:
    from services.settings import Settings

HELP = "serve the MCP server for agents: stdio, or streamable HTTP with --http PORT"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on this port (path /mcp)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on with --http (default loopback)")


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ui.mcp.door import serve_http, serve_stdio

    if args.http is not None:
        asyncio.run(serve_http(settings, args.host, args.http))
        return 0
    credential = caller_credential(settings)
    if credential is None:
        raise AccessDenied("no API token: set PLAYBOOK_TOKEN in the agent host's configuration of this server",
                           "unauthenticated")
    asyncio.run(serve_stdio(settings, credential))
    return 0
