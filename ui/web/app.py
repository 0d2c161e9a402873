"""The engine's web server: JSON API, SSE streams, metrics, health and the dashboard.

It is a client of the engine like the CLI: its own NATS connection sends commands and
reads events, and its projector keeps the run list, audit trail and metrics current.
Every request is checked (ui/web/access.py) with the identity the root hands it: its
token registry follows PB_IDENTITY, so sessions and revocations reach every replica.
Any number of them can run beside one engine.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.identity import Caller
from projections.audit import AuditEntry
from projections.projector import Projector
from services.errors import AccessDenied, EngineUnavailable
from services.identity.authority import COMMAND_ACTIONS, Resource, authorize
from services.identity.guard import Guard
from services.identity.principal import Acting
from services.identity.setup import Identity
from services.identity.signin import SignInCodes, sign_in_link
from services.identity.credentials import NatsRole
from services.read import StoreReadiness, wait_for_streams
from services.settings import Settings
from ui.catalog_client import CatalogClient
from ui.client import EngineClient
from ui.web import api, headers, insights, openapi, prometheus, session, streams
from ui.web.access import ACCESS, Access, guard_requests
from ui.web.backend import BACKEND, Backend

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parents[1] / "static"
READY_LAG = 1000     # events a projector may be behind and still call itself ready


async def healthz(request: web.Request) -> web.Response:
    """The process is up (nothing else is checked: that is /readyz)."""
    return web.json_response({"status": "ok", "uptime_seconds": round(time.time() - request.app[BACKEND].started, 1)})


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: NATS connected, the stream there and taking writes, the projector caught up.

    When not, `reasons` says why in sentences an operator can act on (the store full, NATS
    down, the stream missing or without a leader, the views behind).
    """
    backend = request.app[BACKEND]
    problem = await backend.readiness.problem()
    checks: dict[str, Any] = {"nats_connected": backend.nc.is_connected, "stream": False,
                              "store_writable": problem is None,
                              "projections_caught_up": backend.projector.caught_up, "projection_lag": None}
    reasons = [problem] if problem else []
    if backend.nc.is_connected:
        try:
            info = await backend.nc.jetstream().stream_info(subjects.RUNS_STREAM)
            checks["stream"] = True
            lag = max(0, info.state.last_seq - backend.projector.position)
            checks["projection_lag"] = lag
            checks["projections_caught_up"] = checks["projections_caught_up"] and lag <= READY_LAG
        except Exception as err:  # noqa: BLE001 - any failure here means "not ready", said in the body
            checks["stream_error"] = str(err)
    if not checks["projections_caught_up"]:
        reasons.append(f"the views are behind the stream (lag {checks['projection_lag']})")
    ready = not reasons and all(checks[k] for k in ("nats_connected", "stream"))
    return web.json_response({"ready": ready, "reasons": reasons, **checks}, status=200 if ready else 503)


async def demo_service(request: web.Request) -> web.Response:
    """A stand-in service the example playbooks check and "deploy" to, so they run offline."""
    name = request.match_info["name"]
    return web.json_response({"service": name, "status": "healthy", "version": request.query.get("version", "1.0.0")})


async def dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def make_app(backend: Backend, identity: Identity, codes: SignInCodes) -> web.Application:
    app = web.Application(middlewares=[api.json_errors, guard_requests], client_max_size=api.MAX_BODY_BYTES)
    app[BACKEND] = backend
    app[ACCESS] = Access(identity.guard, backend.settings)
    headers.add_to(app)
    session.add_routes(app, codes)
    streams.add_routes(app)      # first: /api/runs/stream must win over /api/runs/{run_id}
    api.add_routes(app)
    insights.add_routes(app)
    app.router.add_get("/api/openapi.json", openapi.openapi_json)
    prometheus.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/demo/services/{name}", demo_service)
    app.router.add_get("/", dashboard)
    if STATIC.is_dir():
        app.router.add_static("/static/", STATIC)
    return app


@dataclass(slots=True)
class WebServer:
    runner: web.AppRunner
    backend: Backend
    codes: SignInCodes
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def sign_in_link(self, credential: str) -> str:
        """A one-time link (two minutes, one use) that signs the browser in as the credential's owner."""
        return sign_in_link(self.url, self.codes.issue(credential, time.monotonic()))

    async def close(self) -> None:
        await self.runner.cleanup()
        await self.backend.projector.stop()
        await self.backend.nc.drain()


async def start_web(settings: Settings, identity: Identity, login: NatsRole = "engine") -> WebServer:
    """Connect as `login` (`python -m ui.web`: the web's own, pb-web; `playbook up`: the engine's), start the
    projector, serve on the settings' web host and port (0 picks a free one). It makes no stream: it waits for
    the engine's, saying so."""
    nc = await settings.connect("playbook-web", login)
    await wait_for_streams(nc)
    projector = Projector(nc, settings.home / "projections" / "views.msgpack")
    await projector.start()
    await _answer_requests(nc, projector, identity.guard)
    client = EngineClient(nc)
    backend = Backend(nc=nc, client=client, catalog=CatalogClient(client), projector=projector, settings=settings,
                      readiness=StoreReadiness(nc))
    codes = SignInCodes()
    # Handler cancellation: a browser that goes away ends its SSE stream at once.
    runner = web.AppRunner(make_app(backend, identity, codes), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, settings.web_host, settings.web_port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return WebServer(runner, backend, codes, settings.web_host, bound)


async def _answer_requests(nc: NATS, projector: Projector, guard: Guard) -> None:
    """`playbook projections rebuild` asks every web server over NATS (askers at once join one rebuild); `playbook
    audit` asks one."""
    answering: set[asyncio.Task[None]] = set()

    def each_in_its_task(answer: Callable[[Msg], Coroutine[Any, Any, None]]) -> Callable[[Msg], Awaitable[None]]:
        """A subscription calls back one message at a time: in tasks of their own, a second asker joins."""
        async def on_request(msg: Msg) -> None:
            task = asyncio.create_task(answer(msg))
            answering.add(task)
            task.add_done_callback(answering.discard)
        return on_request

    async def admitted(msg: Msg, resource: Resource | None, work: Callable[[Acting], Awaitable[Any]]) -> None:
        """`work` for a verified caller allowed the request's action on `resource` (None: any caller; the work
        shows only what they may read)."""
        caller, action = Caller.of(msg.headers), COMMAND_ACTIONS[msg.subject.removeprefix(f"{subjects.PREFIX}.")]
        try:
            acting = await guard.authenticate(caller.credential, door=caller.door, action=action,
                                              on_behalf_of=caller.on_behalf_of)
            if resource is not None:
                await guard.permit(acting, action, resource, door=caller.door)
            result = {"ok": True, **await work(acting)}
        except (AccessDenied, EngineUnavailable) as err:
            result = {"ok": False, "code": getattr(err, "code", "unavailable"), "error": str(err)}
        except Exception as err:  # the asker gets the reason, the server stays up
            log.exception("answering %s failed", msg.subject)
            result = {"ok": False, "code": "internal_error", "error": str(err)}
        if msg.reply:
            await nc.publish(msg.reply, msgspec.json.encode(result))

    async def rebuild(msg: Msg) -> None:
        await admitted(msg, Resource(), lambda _acting: projector.rebuild())

    async def audit(msg: Msg) -> None:
        async def entries(acting: Acting) -> dict[str, Any]:
            return {"entries": audit_for(projector, guard, acting, json.loads(msg.data or b"{}"))}
        await admitted(msg, None, entries)

    await nc.subscribe(subjects.PROJECTIONS_REBUILD, cb=each_in_its_task(rebuild))
    await nc.subscribe(subjects.AUDIT, queue="audit", cb=each_in_its_task(audit))


def audit_for(projector: Projector, guard: Guard, acting: Acting, query: dict[str, Any]) -> list[AuditEntry]:
    """What `playbook audit` shows the caller: the entries it may read, as on the dashboard's audit page."""
    principal = guard.as_effective(acting)
    since = query.get("since")
    return projector.audit_entries(
        api.readable_audit(projector, lambda action, resource: authorize(principal, action, resource).allowed),
        limit=max(1, min(int(query.get("limit", 200)), api.MAX_LIMIT)), actor=query.get("actor"),
        run_id=query.get("run_id"), action=query.get("action"), since=datetime.fromisoformat(since) if since else None)
