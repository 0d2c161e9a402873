"""Signing in to the dashboard: a token (or `playbook up`'s one-time link) for a session cookie.

`POST /api/session` with `{"token": ...}` or `{"code": ...}` verifies it and asks the identity
service, with that token, to open a session: a short-lived token of the same person, with the
same grants, in the registry every web replica follows (the web server writes no token: its
NATS login may not); its credential, sealed in the reply, is the `pb_session` cookie (HttpOnly,
SameSite=Strict), which scripts cannot read and no other site can make a browser send.
`GET /api/session` says who is signed in; `DELETE /api/session` signs out (the identity service
revokes the session, everywhere).
"""
from __future__ import annotations

import time

from aiohttp import web

from events.identity import CloseSession, Door, IdentityReply, OpenSession
from services.errors import CommandRejected, EngineUnavailable, Forbidden, Unauthenticated
from services.identity.authority import format_grant
from services.identity.principal import Acting
from services.identity.sealing import new_seal, unseal
from services.identity.signin import SignInCodes
from ui.identity_client import IdentityClient
from ui.web.access import ACCESS, CALLER, SESSION_COOKIE, acting, source
from ui.web.api import read_body
from ui.web.backend import BACKEND
from ui.web.bodies import SignInBody, SignOutBody

# A token or a code is under a hundred characters: a caller not yet known gets no more than this read and decoded.
SIGN_IN_MAX_BYTES = 4096
CODES = web.AppKey("sign_in_codes", SignInCodes)


def who(signed_in: Acting) -> dict[str, object]:
    principal = signed_in.principal
    return {"name": principal.name, "kind": principal.kind, "groups": list(principal.groups),
            "grants": [format_grant(g) for g in principal.grants], "on_behalf_of": signed_in.on_behalf_of}


async def sign_in(request: web.Request) -> web.Response:
    body = await read_body(request, SignInBody, max_bytes=SIGN_IN_MAX_BYTES)
    if (body.token is None) == (body.code is None):
        raise Unauthenticated("send exactly one of 'token' (an API token) and 'code' (from a sign-in link)")
    credential = body.token
    guard = request.app[ACCESS].guard
    if body.code is not None:
        try:
            credential = request.app[CODES].redeem(body.code, time.monotonic())
        except Unauthenticated as refused:        # a link spent, expired or made up: recorded like a bad token
            await guard.refuse_request(refused, door="dashboard", action="sign_in", source=source(request))
            raise
    signed_in = await guard.authenticate(credential, door="dashboard", action="sign_in", source=source(request))
    assert credential is not None      # authenticate refuses none
    key = new_seal()
    reply = await _identity(request, credential, OpenSession(seal=key))
    assert reply.token is not None and reply.token.expires_at is not None and reply.sealed_secret is not None
    session = unseal(key, reply.sealed_secret)
    seconds = (reply.token.expires_at - reply.token.created_at).total_seconds()
    response = web.json_response(who(signed_in), status=201)
    response.set_cookie(SESSION_COOKIE, session, max_age=int(seconds), path="/",
                        httponly=True, samesite="Strict", secure=request.secure)
    return response


async def _identity(request: web.Request, credential: str, command: OpenSession | CloseSession,
                    door: Door = "dashboard") -> IdentityReply:
    """The identity service's answer to the caller's request, its refusal raised as the error the web answers (the
    service recorded it)."""
    reply = await IdentityClient(request.app[BACKEND].nc, credential, door=door).send(command)
    if reply.accepted:
        return reply
    assert reply.error is not None
    code, message = reply.error.code, reply.error.message
    if code == "unauthenticated":
        raise Unauthenticated(message)
    if code == "unavailable":
        raise EngineUnavailable(message)
    if code in ("forbidden", "too_many_failures"):
        raise Forbidden(message, code)
    raise CommandRejected(message, code)


async def signed_in(request: web.Request) -> web.Response:
    return web.json_response(who(acting(request)))


async def sign_out(request: web.Request) -> web.Response:
    await read_body(request, SignOutBody)
    caller = request[CALLER]
    if caller.credential is not None:
        await _identity(request, caller.credential, CloseSession(), caller.door)
    response = web.json_response({"signed_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def add_routes(app: web.Application, codes: SignInCodes) -> None:
    app[CODES] = codes
    app.router.add_post("/api/session", sign_in)
    app.router.add_get("/api/session", signed_in)
    app.router.add_delete("/api/session", sign_out)
