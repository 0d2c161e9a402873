"""The MCP server: the eight tools under their original names, and the resources, over one engine client."""
from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from ui.client import EngineClient
from ui.mcp import reading, resources, steering
from ui.mcp.access import Access
from ui.mcp.playbooks import LocalFiles

INSTRUCTIONS = """Playbook Engine: start, watch, steer and approve runs of infrastructure playbooks.
Validate a playbook first (validate_playbook_advanced); start it with execute_playbook_advanced (wait=true
streams progress until it ends or reaches an approval gate); read a run with get_execution_status,
get_execution_logs and the playbook://runs/{id}/events and /view resources. Every call acts as the
principal of a token: over stdio the one the server was given, over HTTP the request's bearer token; a
refusal says which grant is missing."""


def build_server(client: EngineClient, *, per_request: bool = False, files: LocalFiles | None = None) -> MCPServer:
    """Over stdio (`per_request` False) every call acts as the client's token and may name local `files`;
    over HTTP each request's bearer token acts, and files are not read."""
    server = MCPServer("playbook", instructions=INSTRUCTIONS, version=_version())
    access = Access(client, per_request=per_request)
    readable = None if per_request else files or LocalFiles()
    steering.register(server, access, files=readable)
    reading.register(server, access, files=readable)
    resources.register(server, access)
    return server


def _version() -> str:
    """The engine's version as installed, for the server's `serverInfo`."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("playbook-engine")
    except PackageNotFoundError:
        return ""
