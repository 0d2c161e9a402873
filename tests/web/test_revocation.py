"""A revoked token is refused everywhere within a second: two web replicas, their sessions, and the run service.

Each replica keeps its own token registry, following PB_IDENTITY; a dashboard session
opened on one replica is a token of its own (its parent the token it was opened with), so
the other replica knows it, and it ends with its parent.
"""
from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from events.commands import StartRun
from events.identity import caller_headers
from tests.helpers import person, playbook_yaml, refusals, until, web_replica
from ui.client import EngineClient
from ui.identity_client import IdentityClient
from ui.web.access import ACCESS

pytestmark = pytest.mark.integration

QUICK = playbook_yaml([{"id": "a", "action": "noop"}], name="quick")
WITHIN = 1.0     # the promise: everywhere within a second, or nothing is accepted at all


async def status(http: aiohttp.ClientSession, url: str, **kw) -> int:
    async with http.get(f"{url}/api/runs", **kw) as response:
        return response.status


async def test_a_revoked_token_and_its_sessions_are_refused_by_two_replicas_and_the_run_service(
        engine, settings) -> None:
    rita = await person(engine, "rita", "operator")
    credential = rita.caller.credential
    async with web_replica(settings) as one, web_replica(settings) as two, aiohttp.ClientSession() as http:
        async with http.post(f"{one.url}/api/session", json={"token": credential}) as signed_in:
            assert signed_in.status == 201
            session = signed_in.cookies["pb_session"].value
        bearer, cookie = {"headers": caller_headers(credential)}, {"cookies": {"pb_session": session}}
        for url in (one.url, two.url):
            assert await status(http, url, **bearer) == 200
            assert await status(http, url, **cookie) == 200           # a session opened on one, known to both
        assert (await rita.send(StartRun(playbook=QUICK, dry_run=True))).accepted

        assert engine.caller.credential is not None
        await IdentityClient(engine.nc, engine.caller.credential).revoke(credential.split("_")[1], "laptop lost")

        async def refused_by_web(url: str, how: dict) -> None:
            async def refused() -> bool:
                return await status(http, url, **how) == 401
            await until(refused, timeout=WITHIN, every=0.01, what=f"{url} refusing the revoked token")

        async def refused_by_the_run_service() -> None:
            async def refused() -> bool:
                reply = await EngineClient(engine.nc, credential).send(StartRun(playbook=QUICK, dry_run=True))
                return reply.error is not None and reply.error.code == "unauthenticated"
            await until(refused, timeout=WITHIN, every=0.01, what="the run service refusing the revoked token")

        await asyncio.gather(*(refused_by_web(url, how) for url in (one.url, two.url) for how in (bearer, cookie)),
                             refused_by_the_run_service())
        async with http.get(f"{two.url}/api/session", cookies={"pb_session": session}) as answer:
            error = (await answer.json())["error"]
        assert error["code"] == "unauthenticated" and "its token" in error["message"] and "revoked" in error["message"]


async def test_an_open_stream_ends_when_its_token_is_revoked(engine, settings) -> None:
    """A stream outlives the request that opened it: it is ended, not left delivering to a revoked token."""
    ron = await person(engine, "ron", "viewer")
    credential = ron.caller.credential
    async with web_replica(settings) as web, aiohttp.ClientSession() as http:
        async with http.get(f"{web.url}/api/runs/stream", headers=caller_headers(credential)) as stream:
            assert stream.status == 200
            await stream.content.readline()                        # the stream is open and has spoken
            assert engine.caller.credential is not None
            await IdentityClient(engine.nc, engine.caller.credential).revoke(credential.split("_")[1], "left")
            # Cut as at the server's shutdown (the client's EventSource reconnects, and is refused).
            with contextlib.suppress(aiohttp.ClientPayloadError):
                async with asyncio.timeout(WITHIN + 4):             # a second to see it, and the stream's next check
                    while await stream.content.readline():
                        pass                                        # the end of the stream, not a deadline, ends this


async def test_an_open_stream_ends_when_its_token_cannot_be_checked_again(engine, settings, monkeypatch) -> None:
    """Failing closed: a check that breaks ends the stream; the reconnecting browser is checked afresh."""
    vera = await person(engine, "vera", "viewer")
    async with web_replica(settings) as web, aiohttp.ClientSession() as http:
        async with http.get(f"{web.url}/api/runs/stream", headers=caller_headers(vera.caller.credential)) as stream:
            assert stream.status == 200
            await stream.content.readline()

            async def broken(credential: str) -> None:
                raise RuntimeError("the registry is in a state nobody foresaw")
            monkeypatch.setattr(web.runner.app[ACCESS].guard.verifier, "verify", broken)
            with contextlib.suppress(aiohttp.ClientPayloadError):
                async with asyncio.timeout(WITHIN + 4):
                    while await stream.content.readline():
                        pass


async def test_a_session_opens_no_other_session_that_would_outlive_its_sign_out(engine, settings) -> None:
    """A session opened with a session took the person's token as its parent: signing out of the first left the
    second signed in, for twelve hours more. Only a person's token (or up's link) opens a session."""
    sam = await person(engine, "sam", "viewer")
    async with web_replica(settings) as web, aiohttp.ClientSession() as http:
        async with http.post(f"{web.url}/api/session", json={"token": sam.caller.credential}) as signed_in:
            assert signed_in.status == 201
            session = signed_in.cookies["pb_session"].value
        async with http.post(f"{web.url}/api/session", json={"token": session}) as again:
            assert again.status == 403
            assert "a dashboard session cannot open another" in (await again.json())["error"]["message"]
    refused = (await refusals(engine.nc))[-1]
    assert (refused.principal, refused.door, refused.action) == ("sam", "dashboard", "sign_in")
    assert engine.caller.credential is not None
    tokens = await IdentityClient(engine.nc, engine.caller.credential).list(owner="sam")
    assert sorted(t.name for t in tokens) == ["dashboard session", "sam's token"]
