"""Who a tool call acts as, and what it may read: the principal of a Playbook API token.

Over stdio the door acts as the process's token (`$PLAYBOOK_TOKEN`, else the local
admin's). Over HTTP each request brings its own `Authorization: Bearer`, so a port that
others can reach never lends them the token of whoever started the server. Commands carry
the credential and the engine decides; reads are checked here with the same `authorize`
the web uses, on the grants the identity service reports for that very token.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from mcp.server.mcpserver import Context

from events import subjects
from events.commands import Command, Reply
from events.identity import AUTHORIZATION, Caller, bearer
from services.errors import CommandRejected, EngineUnavailable, PlaybookError
from services.identity.authority import Resource, authorize
from services.identity.limiter import FailureLimiter
from services.identity.principal import Principal
from services.read import Run
from ui.client import EngineClient
from ui.identity_client import IdentityClient

log = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])
Result = TypeVar("Result")
REVERIFY_SECONDS = 1.0      # how soon a call that goes on (a watched start) ends after its token is revoked


class Refused(CommandRejected):
    """The engine (or the read check) said no; its sentence is what the agent reads."""


class PeerCaller(Caller, frozen=True, kw_only=True):
    """An HTTP caller, with the address it called from: failed tokens are limited per address, as at the web."""

    source: str = ""


@dataclass(frozen=True, slots=True)
class Access:
    client: EngineClient
    per_request: bool = False      # HTTP: every request's own bearer token; stdio: the process's
    # Failed tokens per address: past the budget a caller is answered here, and the engine records no more of them.
    failures: FailureLimiter = field(default_factory=FailureLimiter)

    def caller(self, ctx: Context) -> Caller:
        """The credential this call acts with."""
        if not self.per_request:
            return Caller(credential=self.client.caller.credential, door="mcp")
        peer = getattr(getattr(ctx.request_context, "request", None), "client", None)
        return PeerCaller(credential=bearer(_authorization(ctx.headers)), door="mcp",
                          source=getattr(peer, "host", "") or "")

    async def principal(self, caller: Caller) -> Principal:
        """Who the credential belongs to and what it grants, as the identity service knows it now (revoked: no one)."""
        if not caller.credential:
            raise Refused("no API token: the MCP server needs one (PLAYBOOK_TOKEN for stdio, an "
                          "`Authorization: Bearer pbt_...` header over HTTP)", "unauthenticated")
        self._within_budget(caller)
        try:
            tokens = await IdentityClient(self.client.nc, caller.credential, door=caller.door).list()
        except CommandRejected as err:
            raise self._counted(caller, Refused(str(err), err.code)) from None
        token_id = caller.credential.split("_")[1] if caller.credential.count("_") >= 2 else ""
        token = next((t for t in tokens if t.id == token_id), None)
        if token is None:
            raise self._counted(caller, Refused("this token is not active", "unauthenticated"))
        return Principal(name=token.owner, kind=token.kind, grants=token.grants, credential_id=token.id)

    def _within_budget(self, caller: Caller) -> None:
        source = getattr(caller, "source", "")
        if source and (wait := self.failures.wait(source, time.monotonic())):
            raise Refused(f"too many failed tokens from {source}; try again in {wait:.0f} s", "too_many_failures")

    def _counted(self, caller: Caller, refusal: Refused) -> Refused:
        if refusal.code == "unauthenticated" and (source := getattr(caller, "source", "")):
            self.failures.failed(source, time.monotonic())
        return refusal

    async def permit_read(self, caller: Caller, playbook: str | None, environment: str | None,
                          run_id: str | None = None) -> Principal:
        principal = await self.principal(caller)
        decision = authorize(principal, "read", Resource(playbook=playbook, environment=environment, run_id=run_id))
        if not decision.allowed:
            # Not in PB_ACCESS (only the engine and a web server write there): the log is its record.
            log.warning("mcp: %s refused a read of %s: %s", principal.name,
                        run_id or f"{playbook or '*'} in {environment or '*'}", decision.reason)
            raise Refused(decision.reason, "forbidden")
        return principal

    @staticmethod
    def may_read(principal: Principal, playbook: str | None, environment: str | None) -> bool:
        return authorize(principal, "read", Resource(playbook=playbook, environment=environment)).allowed

    async def readable_run(self, caller: Caller, run_id: str) -> Run:
        """The run, if it exists and the caller may read it (as the web: unknown, or refused with the reason).
        A run id that is no subject token (`*` would match every run) is a bad request, before anything is read."""
        if not subjects.valid_run_id(run_id):
            await self.principal(caller)
            raise Refused(f"run id {run_id[:80]!r} may hold only letters, digits, '-' and '_' (at most 64)",
                          "bad_request")
        run = await self.client.run(run_id)
        if not run.exists or run.started is None:
            await self.principal(caller)
            raise Refused(f"no run with id {run_id!r}", "unknown_run")
        await self.permit_read(caller, playbook_of(run), run.started.environment, run_id)
        return run

    async def while_permitted(self, caller: Caller, work: Coroutine[Any, Any, Result]) -> Result:
        """A call that goes on after its first check (a watched start) is checked again every second, as the web's
        streams are: once its token is revoked or expired, the work stops and the call is that refusal."""
        task = asyncio.ensure_future(work)
        try:
            while not (await asyncio.wait({task}, timeout=REVERIFY_SECONDS))[0]:
                with contextlib.suppress(EngineUnavailable):    # tokens cannot be checked just now: it goes on
                    await self.principal(caller)
            return task.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def send(self, caller: Caller, command: Command) -> Reply:
        """Send a command as the caller; a refusal becomes `Refused` with the engine's sentence."""
        self._within_budget(caller)
        reply = await self.client.send(command, caller=caller)
        if not reply.accepted:
            error = reply.error
            details = "; ".join(str(d.get("message", d)) for d in (error.details if error else [])[:20])
            message = (error.message if error else "refused") + (f" ({details})" if details else "")
            raise self._counted(caller, Refused(message, error.code if error else "rejected"))
        return reply


def playbook_of(run: Run) -> str:
    """The name of a started run's playbook (the client resolves a playbook its first event only pins)."""
    assert run.started is not None and run.started.playbook is not None
    return run.started.playbook.name


def _authorization(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Only the `Authorization` header, spelled as `bearer` reads it (HTTP servers hand headers lower-cased)."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "authorization"), None)
    return {AUTHORIZATION: value} if value else {}


def answered(error: type[Exception]) -> Callable[[Handler], Handler]:
    """Our errors become the SDK's `error` (a tool or resource error the agent reads, the engine's sentence in
    it); anything else stays a crash, which the SDK reports without its text."""
    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def answering(*args: Any, **kwargs: Any) -> Any:
            try:
                return await handler(*args, **kwargs)
            except CommandRejected as err:
                raise error(f"refused ({err.code}): {err}") from None
            except PlaybookError as err:
                raise error(str(err)) from None
        return cast(Handler, answering)
    return wrap
