"""The engine's web server. For now: health, and the local endpoints the examples call."""
from __future__ import annotations

import time

from aiohttp import web

STARTED = time.time()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "uptime_seconds": round(time.time() - STARTED, 1)})


async def demo_service(request: web.Request) -> web.Response:
    """A stand-in service the example playbooks check and "deploy" to, so they run offline."""
    name = request.match_info["name"]
    return web.json_response({"service": name, "status": "healthy", "version": request.query.get("version", "1.0.0")})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/demo/services/{name}", demo_service)
    return app


async def start_web(host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the server; port 0 picks a free one. Returns the runner and the bound port."""
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, bound
