"""The JSON API: everything the CLI can do, over HTTP.

Reads come from the projector's views (the run list, audit, metrics) or from a run's
own events (one run, its logs), and show only what the caller may read. Every change is
a command sent to the run service with the caller's own credential, exactly as the CLI
sends it (so the web cannot act as anyone else); its reply becomes the response.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import msgspec
import nats.errors
from aiohttp import web
from multidict import MultiMapping

from events import subjects
from events.json_limits import decode_json
from events.run import RunEvent
from events.commands import (
    ApproveStep, CancelRun, Command, PauseRun, RejectStep, ResetCircuit, ResumeRun, RetryRun, RollbackRun, StartRun,
)
from projections import run_list
from projections.audit import IDENTITY_ACTIONS, AuditEntry
from projections.projector import Projector
from projections.run_view import run_view, timeline
from projections.step_logs import logs_of
from services.errors import AccessDenied, CommandRejected, EngineUnavailable, TooLarge, TooManyFailures
from services.identity.authority import Action, Resource
from services.playbook import MAX_BYTES, validate_playbook
from services.read import RUN_STATUSES, fold, run_started
from ui.catalog_client import Published, version_json
from ui.web.access import CALLER, may, may_on_run, may_read, permit
from ui.web.bodies import (
    ControlBody, DecisionBody, PublishBody, RebuildBody, ResetCircuitBody, RetryBody, StartBody, ValidateBody,
)
from ui.web.backend import BACKEND, Backend

log = logging.getLogger(__name__)

B = TypeVar("B", bound=msgspec.Struct)

# The run service's rejection codes, as HTTP statuses.
STATUS_OF_CODE = {
    "bad_request": 400, "invalid_playbook": 422, "unknown_run": 404, "unknown_playbook": 404,
    "illegal_transition": 409, "run_exists": 409, "approval_refused": 403, "internal_error": 502,
    "unknown_step": 404, "incompatible_playbook": 409, "unknown_circuit": 404,
    "unauthenticated": 401, "forbidden": 403, "forged_actor": 403, "too_many_failures": 429, "unavailable": 503,
    "engine_unavailable": 503, "request_entity_too_large": 413,
    "version_exists": 409, "too_large": 413, "unreadable_run": 409,
}
# The engine's codes for the two things HTTP has its own words for.
HTTP_CODE = {EngineUnavailable.code: "engine_unavailable", "too_large": "request_entity_too_large"}
MAX_LIMIT = 1000
MAX_BODY_BYTES = 2 * MAX_BYTES     # a playbook at the size limit, JSON-escaped; beyond, 413 before reading it
# Run ids are subject tokens: anything else (".", "*", ">") never reaches NATS.
RUN_PATH = f"/api/runs/{{run_id:{subjects.RUN_ID_PATTERN}}}"


class ApiError(Exception):
    """An answer that is an error: a status, a stable code and a message that says what to do."""

    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []


def error_response(status: int, code: str, message: str, details: list[Any] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "details": details or []}}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    """Every error of the API is JSON with a stable code, never an HTML page or a bare 500."""
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err.status, err.code, err.message, err.details)
    except AccessDenied as err:
        response = error_response(err.http_status, err.code, str(err))
        if isinstance(err, TooManyFailures):
            response.headers["Retry-After"] = str(max(1, round(err.retry_after)))
        return response
    except TooLarge as err:
        return error_response(413, "request_entity_too_large", f"{request.method} {request.path}: {err}")
    except CommandRejected as err:    # raised at this edge (the catalog's reads, an upload), not sent back by a service
        return error_response(STATUS_OF_CODE.get(err.code, 400), err.code, str(err))
    except EngineUnavailable as err:
        return error_response(503, "engine_unavailable", str(err))
    except nats.errors.MaxPayloadError:
        # The command, encoded for NATS (non-ASCII text grows), is larger than the server takes.
        return error_response(413, "request_entity_too_large",
                              f"{request.method} {request.path}: the command is larger than NATS accepts "
                              f"({backend(request).nc.max_payload} bytes); send a smaller playbook")
    except nats.errors.Error as err:
        return error_response(503, "engine_unavailable", f"NATS did not answer: {type(err).__name__}: {err}")
    except web.HTTPException as err:
        if not request.path.startswith("/api/") or err.status < 400:
            raise
        response = error_response(err.status, err.reason.lower().replace(" ", "_"),
                                  f"{request.method} {request.path}: {err.reason}")
        if "Allow" in err.headers:       # a 405 names the methods the path takes (RFC 9110)
            response.headers["Allow"] = err.headers["Allow"]
        return response
    except Exception:
        # A stream that has started can only end; anything else still answers in JSON.
        if not request.path.startswith("/api/") or request.path.endswith("/stream"):
            raise
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "server_error", f"{request.method} {request.path} failed inside the web "
                                                   "server; its log has the details")


def backend(request: web.Request) -> Backend:
    return request.app[BACKEND]


async def read_body(request: web.Request, kind: type[B], max_bytes: int | None = None) -> B:
    """The body as `kind`; an empty body means every default (if `kind` has them). `max_bytes` holds a body below
    what the server takes of anyone (a caller not yet known)."""
    try:
        raw = await (request.read() if max_bytes is None else _read_at_most(request, max_bytes))
    except web.HTTPRequestEntityTooLarge as err:
        raise ApiError(413, "request_entity_too_large", f"{request.method} {request.path}: the body is larger than "
                                                        f"this server takes ({err.text})") from None
    try:
        body: B = decode_json(raw or b"{}", kind)
        return body
    except msgspec.DecodeError as err:   # ValidationError, and JSON nested too deep, included
        raise ApiError(400, "bad_request", f"{request.method} {request.path}: bad JSON body: {err}") from None


async def _read_at_most(request: web.Request, max_bytes: int) -> bytes:
    raw = bytearray()
    if (request.content_length or 0) <= max_bytes:
        async for chunk in request.content.iter_any():
            raw += chunk
            if len(raw) > max_bytes:
                break
    if (request.content_length or 0) > max_bytes or len(raw) > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=request.content_length or len(raw))
    return bytes(raw)


async def send(request: web.Request, command: Command, created: bool = False) -> web.Response:
    """The command, sent with the caller's credential: the run service verifies it and decides."""
    reply = await backend(request).client.send(command, caller=request[CALLER])
    if not reply.accepted:
        assert reply.error is not None
        code = HTTP_CODE.get(reply.error.code, reply.error.code)
        raise ApiError(STATUS_OF_CODE.get(code, 400), code, reply.error.message, reply.error.details)
    body = {"accepted": True, "run_id": reply.run_id, "events": reply.events}
    return web.json_response(body, status=201 if created else 200)


# -- runs ------------------------------------------------------------------------------

def _filters(request: web.Request) -> MultiMapping[str]:
    """A list's query: a filter given twice is refused, not read once with the rest dropped (several values of
    one go comma-separated, as status=a,b)."""
    q = request.query
    if repeated := sorted({key for key in q if len(q.getall(key)) > 1}):
        raise ApiError(400, "bad_request", f"give {', '.join(repeated)[:200]} once in the query; several values "
                                           "are written comma-separated, as status=a,b")
    return q


async def list_runs(request: web.Request) -> web.Response:
    q = _filters(request)
    statuses = set(filter(None, q.get("status", "").split(",")))
    if unknown := statuses - set(RUN_STATUSES):
        raise ApiError(400, "bad_request", f"no run status {', '.join(sorted(unknown))[:200]}; a run is "
                                           f"{', '.join(RUN_STATUSES)}")
    since, until = _time(q, "since"), _time(q, "until")
    active = _flag(q, "active")
    limit = _int(q, "limit", 200, 1, MAX_LIMIT)
    views = backend(request).projector.views
    runs = [r for r in views.runs.values()
            if (not statuses or r.status in statuses)
            and (not q.get("playbook") or r.playbook == q["playbook"])
            and (not q.get("environment") or r.environment == q["environment"])
            and (since is None or r.started_at >= since) and (until is None or r.started_at <= until)
            and (active is None or r.active == active) and may_read(request, r.playbook, r.environment)]
    runs.sort(key=lambda r: r.started_at, reverse=True)
    return web.json_response({"position": views.position, "total": len(runs),
                              "runs": [run_list.as_dict(r) for r in runs[:limit]]})


async def start_run(request: web.Request) -> web.Response:
    body = await read_body(request, StartBody)
    if (body.playbook is None) == (body.playbook_id is None):
        raise ApiError(400, "bad_request", "give exactly one of 'playbook' (YAML text) and 'playbook_id'")
    return await send(request, StartRun(
        playbook=body.playbook or "", playbook_id=body.playbook_id or "", source="<api>", parameters=body.parameters,
        environment=body.environment, run_id=body.run_id, dry_run=body.dry_run,
        allow_unsafe_shell=body.allow_unsafe_shell, on_failure=body.on_failure,
        approval_required=body.approval_required), created=True)


async def get_run(request: web.Request) -> web.Response:
    envelopes = await _events(request)
    run = fold(request.match_info["run_id"], await backend(request).client.playbooks.resolved(envelopes))
    view = run_view(run)
    return web.json_response({**view, "may": may_on_run(request, run),
                              "timeline": timeline(envelopes, run.quarantined)}, dumps=_dumps)


async def run_events(request: web.Request) -> web.Response:
    after = _int(request.query, "after", 0, 0, None)
    envelopes = await _events(request)
    return web.json_response([{"seq": seq, "type": type(e).__name__, **msgspec.to_builtins(e)}
                              for seq, e in envelopes if seq > after], dumps=_dumps)


async def run_logs(request: web.Request) -> web.Response:
    q = request.query
    attempt = _int(q, "attempt", None, 1, None)
    entries = logs_of(await _events(request), step_id=q.get("step") or None, attempt=attempt)
    return web.json_response(msgspec.to_builtins(entries), dumps=_dumps)


def control(kind: type[PauseRun | ResumeRun | CancelRun | RollbackRun]) -> Callable[[web.Request],
                                                                                    Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        body = await read_body(request, ControlBody)
        fields: dict[str, Any] = {"run_id": request.match_info["run_id"]}
        if kind is not ResumeRun:
            fields["reason"] = body.reason
        return await send(request, kind(**fields))
    return handler


async def retry_run(request: web.Request) -> web.Response:
    body = await read_body(request, RetryBody)
    if body.playbook is not None and body.playbook_id is not None:
        raise ApiError(400, "bad_request", "give exactly one of 'playbook' (YAML text) and 'playbook_id', not both")
    return await send(request, RetryRun(run_id=request.match_info["run_id"],
                                        from_step=body.from_step, parameters=body.parameters, reason=body.reason,
                                        playbook=body.playbook, playbook_id=body.playbook_id or "", source="<api>"))


def decision(kind: type[ApproveStep | RejectStep]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        body = await read_body(request, DecisionBody)
        return await send(request, kind(run_id=request.match_info["run_id"], step_id=request.match_info["step_id"],
                                        comment=body.comment))
    return handler


# -- playbooks, views, circuits ------------------------------------------------------------

async def validate(request: web.Request) -> web.Response:
    body = await read_body(request, ValidateBody)
    # Beside the loop: a playbook may be 32 MiB, seconds of checking that would hold every request and stream.
    diagnostics = await asyncio.to_thread(validate_playbook, body.playbook, "<api>", parameters=body.parameters,
                                          environment=body.environment)
    errors = sum(1 for d in diagnostics if d.severity == "error")
    return web.json_response({"valid": not errors, "errors": errors, "diagnostics": msgspec.to_builtins(diagnostics)})


async def list_playbooks(request: web.Request) -> web.Response:
    """Each name in the catalog with its latest version, and every version it has (newest first)."""
    return web.json_response([{**version_json(latest), "versions": versions}
                              for latest, versions in await backend(request).catalog.latest()])


async def publish_playbook(request: web.Request) -> web.Response:
    body = await read_body(request, PublishBody)
    answer = await backend(request).catalog.publish(body.playbook, version=body.version, source="<api>",
                                                    caller=request[CALLER])
    if not isinstance(answer, Published):
        assert answer.error is not None
        raise ApiError(STATUS_OF_CODE.get(answer.error.code, 400), answer.error.code, answer.error.message,
                       answer.error.details)
    return web.json_response({**version_json(answer.version), "new": answer.new}, status=201 if answer.new else 200)


async def get_playbook(request: web.Request) -> web.Response:
    """One version (`name` is its latest), with its YAML and what a start form needs."""
    catalog = backend(request).catalog
    version = await catalog.resolve(request.match_info["reference"])
    parsed = (await catalog.parsed(version)).playbook
    return web.json_response({**version_json(version), "yaml": await catalog.text(version.digest),
                              "parameters": msgspec.to_builtins(parsed.parameters),
                              "environments": list(parsed.environments)})


async def playbook_versions(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    versions = await backend(request).catalog.versions(name)
    if not versions:
        raise ApiError(404, "unknown_playbook", f"no playbook {name!r} in the catalog; GET /api/playbooks lists them")
    return web.json_response([version_json(v) for v in reversed(versions)])


async def playbook_diff(request: web.Request) -> web.Response:
    """A unified diff of two versions' texts: ?from=V1&to=V2."""
    name, q = request.match_info["name"], request.query
    if not q.get("from") or not q.get("to"):
        raise ApiError(400, "bad_request", "give the two versions to compare: ?from=V1&to=V2")
    diff = await backend(request).catalog.diff(name, q["from"], q["to"])
    return web.json_response({"name": name, "from": q["from"], "to": q["to"], "diff": diff})


async def metrics(request: web.Request) -> web.Response:
    await permit(request, "read", Resource())      # counts of every playbook: a viewer of all of them
    return web.json_response(backend(request).projector.views.metrics.as_json(), dumps=_dumps)


async def audit(request: web.Request) -> web.Response:
    q = _filters(request)
    entries = audit_entries(request, actor=q.get("actor") or None, run_id=q.get("run_id") or None,
                            action=q.get("action") or None, since=_time(q, "since"), until=_time(q, "until"),
                            limit=_int(q, "limit", 500, 1, MAX_LIMIT))
    return web.json_response(msgspec.to_builtins(entries), dumps=_dumps)


def audit_entries(request: web.Request, *, limit: int, **where: Any) -> list[AuditEntry]:
    projector = backend(request).projector
    keep = readable_audit(projector, lambda action, resource: may(request, action, resource))
    return projector.audit_entries(keep, limit=limit, **where)


def readable_audit(projector: Projector, may_do: Callable[[Action, Resource], bool]) -> Callable[[AuditEntry], bool]:
    """Which audit entries a caller may see: acts on runs they may read, breaker resets if they may read
    everything, refused access and tokens issued and revoked if they may read refusals (admins)."""
    everything, refusals = may_do("read", Resource()), may_do("read_refusals", Resource())

    def readable(entry: AuditEntry) -> bool:
        if entry.action in IDENTITY_ACTIONS:
            return refusals
        summary = projector.views.runs.get(entry.run_id) if entry.run_id else None
        if summary is None:
            return everything
        return may_do("read", Resource(playbook=summary.playbook, environment=summary.environment))
    return readable


async def circuits(request: web.Request) -> web.Response:
    await permit(request, "read", Resource())
    breakers = await backend(request).client.circuits()
    return web.json_response([{"key": b.key, "state": b.state, "failures_in_a_row": b.failures,
                               "open_until": b.until and b.until.isoformat(), "reason": b.reason or None,
                               "last_change": b.last_change and b.last_change.isoformat()} for b in breakers])


async def reset_circuit(request: web.Request) -> web.Response:
    body = await read_body(request, ResetCircuitBody)
    return await send(request, ResetCircuit(key=body.key))


async def rebuild_projections(request: web.Request) -> web.Response:
    await read_body(request, RebuildBody)
    await permit(request, "rebuild_projections", Resource())
    return web.json_response(await backend(request).projector.rebuild())


# -- helpers ------------------------------------------------------------------------------

async def _events(request: web.Request) -> list[tuple[int, RunEvent]]:
    run_id = request.match_info["run_id"]
    await permit_run_read(request, run_id)
    return await backend(request).client.events(run_id)


async def permit_run_read(request: web.Request, run_id: str) -> None:
    """404 for a run that does not exist, 403 (recorded) for one the caller may not read."""
    summary = backend(request).projector.views.runs.get(run_id)
    if summary is not None:
        playbook, environment = summary.playbook, summary.environment
    else:                       # started since the views last moved: its first event says
        try:
            started = await run_started(backend(request).client.store, run_id)
        except msgspec.DecodeError as err:   # written by a newer engine, say: who may read it cannot be told
            await permit(request, "read", Resource(run_id=run_id))   # as for every playbook: a viewer of all
            raise ApiError(409, "unreadable_run", f"run {run_id!r} is stored, but this version of the engine "
                           f"cannot read its start: {err}") from None
        if started is None:
            raise ApiError(404, "unknown_run", f"no run with id {run_id!r}")
        playbook, environment = started.playbook_name, started.environment
    await permit(request, "read", Resource(playbook=playbook, environment=environment, run_id=run_id))


def _dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _time(query: Any, name: str) -> datetime | None:
    text = query.get(name)
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))   # RFC 3339 allows "t" and "z"
    except ValueError:
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be an ISO 8601 time, got {text!r}") from None
    if value.tzinfo is None:
        raise ApiError(400, "bad_request", f"query parameter {name!r} needs a time zone (say ...Z), got {text!r}")
    return value


def _int(query: Any, name: str, default: Any, low: int, high: int | None) -> Any:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be an integer, got {text!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be {bounds}, got {value}")
    return value


def _flag(query: Any, name: str) -> bool | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, "bad_request", f"query parameter {name!r} must be true or false, got {text!r}")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/runs", list_runs)
    r.add_post("/api/runs", start_run)
    r.add_get(RUN_PATH, get_run)
    r.add_get(RUN_PATH + "/events", run_events)
    r.add_get(RUN_PATH + "/logs", run_logs)
    for name, kind in (("pause", PauseRun), ("resume", ResumeRun), ("cancel", CancelRun), ("rollback", RollbackRun)):
        r.add_post(f"{RUN_PATH}/{name}", control(kind))
    r.add_post(RUN_PATH + "/retry", retry_run)
    r.add_post(RUN_PATH + "/steps/{step_id}/approve", decision(ApproveStep))
    r.add_post(RUN_PATH + "/steps/{step_id}/reject", decision(RejectStep))
    r.add_post("/api/validate", validate)
    r.add_get("/api/playbooks", list_playbooks)
    r.add_post("/api/playbooks", publish_playbook)
    r.add_get("/api/playbooks/{reference}", get_playbook)
    r.add_get("/api/playbooks/{name}/versions", playbook_versions)
    r.add_get("/api/playbooks/{name}/diff", playbook_diff)
    r.add_get("/api/metrics", metrics)
    r.add_get("/api/audit", audit)
    r.add_get("/api/circuits", circuits)
    r.add_post("/api/circuits/reset", reset_circuit)
    r.add_post("/api/projections/rebuild", rebuild_projections)
