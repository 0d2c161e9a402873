"""`GET /api/insights` (`?playbook=`, `&environment=`): what the learning service learned from past runs, and what
it recommends, as far as the caller may read runs."""
from __future__ import annotations

import msgspec
from aiohttp import web

from services.learning.errors import LearningRefused
from ui.insights import LearningClient
from ui.web.access import CALLER
from ui.web.api import STATUS_OF_CODE, ApiError, backend


async def get_insights(request: web.Request) -> web.Response:
    playbook = request.query.get("playbook") or None
    environment = request.query.get("environment")     # "" asks for the runs without an environment
    try:
        client = backend(request).client
        insights = await LearningClient(client.nc, client.headers(request[CALLER])).insights(
            playbook, environment=environment, wait=0)
    except LearningRefused as err:
        if err.code in STATUS_OF_CODE:       # refused access: 401, 403
            raise ApiError(STATUS_OF_CODE[err.code], err.code, str(err)) from None
        raise ApiError(503, "engine_unavailable", f"the learning service cannot answer now: {err}") from None
    return web.Response(body=msgspec.json.encode(insights), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/insights", get_insights)
