"""`GET /api/insights` (`?playbook=`): what the learning service learned from past runs, and what it recommends."""
from __future__ import annotations

import msgspec
from aiohttp import web

from services.learning.errors import LearningRefused
from ui.insights import LearningClient
from ui.web.api import ApiError, backend


async def get_insights(request: web.Request) -> web.Response:
    playbook = request.query.get("playbook") or None
    try:
        insights = await LearningClient(backend(request).nc).insights(playbook, wait=0)
    except LearningRefused as err:
        raise ApiError(503, "engine_unavailable", f"the learning service cannot answer now: {err}") from None
    return web.Response(body=msgspec.json.encode(insights), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/insights", get_insights)
