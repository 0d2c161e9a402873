"""The interfaces: the `playbook` CLI, the web app (API, SSE, dashboard), later MCP."""
