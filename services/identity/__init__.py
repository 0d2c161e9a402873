"""Identity and authority: who is asking (principals, tokens, verifiers) and what they may do (roles, grants).

The doors (run service, web, CLI, MCP) call `Guard.admit` / `authenticate` + `permit`;
everything else here is what that call is made of.
"""
