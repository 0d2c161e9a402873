"""Who is asking the web, and may they: checked on every request, before any handler runs.

- `Host` must be one of the names the web answers to (loopback, `$PLAYBOOK_WEB_HOSTS`), so a
  page whose DNS name is rebound to this server cannot read from it.
- A request that changes anything must be JSON (`Content-Type: application/json`) and come
  from this origin (`Origin`, `Sec-Fetch-Site`): a cross-site form, a `text/plain` body or a
  `no-cors` fetch is refused before it is read. A request without `Origin` is accepted only
  with a bearer token, which no other site can make a browser send.
- The credential is `Authorization: Bearer <token>`, else the dashboard's session cookie
  (HttpOnly, SameSite=Strict). The guard verifies it and rate-limits failures per address.
- A request that names someone in `X-Playbook-User` other than its caller is refused as a
  forged actor. Every refusal is recorded (PB_ACCESS).

What a request may read is decided per run (`permit_read`, `may_read`); what it may change,
by the run service, to which the web forwards the caller's own credential.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from events.identity import ON_BEHALF_OF, Caller, Door, bearer
from services.errors import AccessDenied, Unauthenticated
from services.identity.authority import Action, Resource, authorize
from services.identity.guard import Guard
from services.identity.names import InvalidName, normalise_name
from services.identity.principal import Acting
from services.read import Run, started_by
from services.settings import Settings

SESSION_COOKIE = "pb_session"
LEGACY_USER_HEADER = "X-Playbook-User"     # how callers named themselves before tokens: now only checked
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
SAFE_METHODS = ("GET", "HEAD")        # OPTIONS too is checked: only another origin's preflight sends it
OPEN_PATHS = ("/healthz", "/readyz")                          # also for probes that know no host name
PUBLIC_PATHS = ("/", "/api/openapi.json")                      # the page and the API's document
SIGN_IN = ("POST", "/api/session")
PUBLIC_PREFIXES = ("/static/", "/demo/services/")

ACTING = web.RequestKey("acting", Acting)
CALLER = web.RequestKey("caller", Caller)


@dataclass(frozen=True, slots=True)
class Access:
    guard: Guard
    settings: Settings

    def allowed_hosts(self) -> tuple[str, ...]:
        own = () if self.settings.web_host in ("0.0.0.0", "::", "") else (self.settings.web_host.lower(),)
        return (*LOOPBACK, *own, *self.settings.web_hosts)


ACCESS = web.AppKey("access", Access)


class RequestRefused(AccessDenied):
    """A request of the wrong shape for where it comes from: another site, another host, not JSON."""

    def __init__(self, message: str, code: str, http_status: int) -> None:
        super().__init__(message, code)
        self.http_status = http_status


def source(request: web.Request) -> str:
    """The caller's address, for the failure limiter and the records."""
    return request.remote or ""


def credential_of(request: web.Request) -> tuple[str | None, Door]:
    """The bearer token, else the session cookie (the dashboard's door)."""
    if token := bearer(dict(request.headers)):
        return token, "http"
    return request.cookies.get(SESSION_COOKIE) or None, "dashboard"


def _host_name(request: web.Request) -> str:
    host = (request.host or "").lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def check_host(request: web.Request, access: Access) -> None:
    allowed = access.allowed_hosts()
    if "*" in allowed or _host_name(request) in allowed:
        return
    raise RequestRefused(f"this server does not answer to the host {request.host[:100]!r}; add it to "
                         "PLAYBOOK_WEB_HOSTS", "unknown_host", 421)


def check_same_origin(request: web.Request, access: Access, *, with_cookie: bool) -> None:
    """Changes (and preflights) must come from this origin, and changes must be JSON; without an Origin, only with
    a bearer token."""
    origin = request.headers.get("Origin")
    if request.headers.get("Sec-Fetch-Site") == "cross-site" or origin == "null":
        raise RequestRefused("a page of another site may not change anything here", "cross_origin", 403)
    if origin is None:
        if with_cookie:
            raise RequestRefused("a change made with the dashboard's session must say its Origin", "cross_origin",
                                 403)
    elif origin.lower() not in (f"{request.scheme}://{request.host}".lower(), *access.settings.web_origins):
        raise RequestRefused(f"a page of {origin[:100]} may not change anything here (add it to "
                             "PLAYBOOK_WEB_ORIGINS if it is yours)", "cross_origin", 403)
    bodiless_delete = request.method == "DELETE" and not request.body_exists   # `curl -X DELETE`: nothing to read
    unrouted = request.match_info.http_exception is not None    # no handler reads it: a 404 or 405 says so
    if (request.content_type != "application/json" and request.method != "OPTIONS" and not bodiless_delete
            and not unrouted):
        raise RequestRefused(f"{request.method} {request.path} takes a JSON body (Content-Type: application/json), "
                             f"not {request.content_type}", "unsupported_media_type", 415)


def _is_public(request: web.Request, access: Access) -> bool:
    path = request.path
    return (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or (request.method, path) == SIGN_IN
            or (path == "/metrics" and access.settings.metrics_access == "open"))


@web.middleware
async def guard_requests(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Host, origin and credential checks for every request; the acting principal for the handler."""
    if request.path in OPEN_PATHS:
        return await handler(request)
    access = request.app[ACCESS]
    credential, door = credential_of(request)
    try:
        check_host(request, access)
        if request.method not in SAFE_METHODS:
            check_same_origin(request, access, with_cookie=door == "dashboard" and credential is not None)
    except RequestRefused as refused:
        await access.guard.refuse_request(refused, door=door, action=f"{request.method} {request.path}",
                                          source=source(request))
        raise
    if _is_public(request, access):
        return await handler(request)
    acting = await access.guard.authenticate(credential, door=door, action=f"{request.method} {request.path}",
                                             source=source(request),
                                             on_behalf_of=request.headers.get(ON_BEHALF_OF) or None)
    await _refuse_forged_name(request, access, acting, door)
    request[ACTING] = acting
    request[CALLER] = Caller(credential=credential, on_behalf_of=acting.on_behalf_of, door=door)
    return await handler(request)


async def _refuse_forged_name(request: web.Request, access: Access, acting: Acting, door: Door) -> None:
    claimed = request.headers.get(LEGACY_USER_HEADER)
    if claimed is None:
        return
    try:
        name = normalise_name(claimed)
    except InvalidName:
        name = None
    if name not in (acting.actor, acting.effective):
        raise await access.guard.forbid(
            acting, f"{LEGACY_USER_HEADER} names {claimed[:80]!r}, but the credential is {acting.actor}'s: who acts "
                    "is always the caller", door=door, action=f"{request.method} {request.path}", target="",
            source=source(request), code="forged_actor")


def acting(request: web.Request) -> Acting:
    found: Acting | None = request.get(ACTING)
    if found is None:
        raise Unauthenticated("sign in first: send `Authorization: Bearer <token>`")
    return found


def may(request: web.Request, action: Action, resource: Resource) -> bool:
    """Whether the caller may, without a record: for filtering what a list shows."""
    who = acting(request)
    principal = who.principal
    if who.on_behalf_of is not None:
        principal = request.app[ACCESS].guard.as_effective(who)
    return authorize(principal, action, resource).allowed


async def permit(request: web.Request, action: Action, resource: Resource) -> None:
    """Forbidden (recorded) unless the caller may."""
    caller = request[CALLER]
    await request.app[ACCESS].guard.permit(acting(request), action, resource, door=caller.door,
                                           source=source(request))


def may_read(request: web.Request, playbook: str | None, environment: str | None) -> bool:
    return may(request, "read", Resource(playbook=playbook, environment=environment))


STEERING: tuple[Action, ...] = ("pause", "resume", "cancel", "rollback", "retry")


def may_on_run(request: web.Request, run: Run) -> dict[str, Any]:
    """What the caller may do to this run, so a page enables only those controls: asked as the run service asks
    (a retry of a run started with allow_unsafe_shell needs that grant too; a gate names its approvers, and whoever
    set the run going may not approve it). The run service still decides each command, on the run's state."""
    started = run.started
    where = Resource(playbook=started.playbook_name if started else None,
                     environment=started.environment if started else None, run_id=run.id)
    unsafe = replace(where, unsafe_shell=started is not None and started.allow_unsafe_shell)
    who = acting(request)
    set_going = started is not None and started_by(run, {who.actor, who.effective}) is not None
    gates = {step_id: gate for step_id in run.specs if (gate := run.gate_of(step_id)) is not None}
    return {**{action: may(request, action, unsafe if action == "retry" else where) for action in STEERING},
            # What the learning service folded from the playbook's runs in the run's environment (GET /api/insights).
            "insights": may(request, "read", Resource(playbook=where.playbook, environment=where.environment)),
            "gates": {step_id: {
                # Four eyes: whoever started or retried the run may reject at its gates, not approve them.
                "approve": may(request, "approve", replace(where, approvers=tuple(gate.required_approvers)))
                and (gate.allow_self_approval or not set_going),
                "reject": may(request, "reject", replace(where, approvers=tuple(gate.required_approvers)))}
                for step_id, gate in gates.items()}}
