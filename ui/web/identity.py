"""Who is asking. Every command the web sends names its actor, taken from here.

Until API tokens and roles arrive, the caller says who it is in `X-Playbook-User`
(the dashboard sends the name typed into its "you are" field). Authentication will
replace this function's body, not its callers.
"""
from __future__ import annotations

import re

from aiohttp import web

USER_HEADER = "X-Playbook-User"
ANONYMOUS = "anonymous"
_NAME = re.compile(r"[\w.@+-]{1,64}")


class BadIdentity(ValueError):
    pass


def actor_of(request: web.Request) -> str:
    name = request.headers.get(USER_HEADER, "").strip()
    if not name:
        return ANONYMOUS
    if not _NAME.fullmatch(name):
        raise BadIdentity(f"{USER_HEADER} must be 1-64 letters, digits or . @ + - _; got {name[:80]!r}")
    return name
