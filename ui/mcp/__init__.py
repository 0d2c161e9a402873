"""The agents' door: an MCP server (the official `mcp` SDK) over the same client as the CLI and the web.

Nothing outside this package imports `mcp`, and the CLI imports this package only when
`playbook mcp` runs, so other commands start as fast as before.
"""
