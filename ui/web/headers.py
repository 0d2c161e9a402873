"""What every answer tells the browser: never frame the dashboard, run only its own scripts, keep no copy of what a
person was shown.

A page on another port of this host is the same site, so the browser sends it the session cookie: framed there,
the dashboard would be signed in, its Approve and Cancel buttons under a click meant for something else.
"""
from __future__ import annotations

from aiohttp import web

POLICY = "; ".join((
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
    "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
))
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Frame-Options": "DENY",                  # frame-ancestors, for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer: the policy above; a cache may keep the page's own files (checked each time), nothing else."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-cache" if request.path.startswith("/static/") else "no-store")


def add_to(app: web.Application) -> None:
    app.on_response_prepare.append(add_headers)
