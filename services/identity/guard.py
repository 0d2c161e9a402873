"""The calls every door makes: who is this, may they, and a record when they may not.

`authenticate` checks the source's failure budget, verifies the credential and applies
an admin's "on behalf of"; `permit` authorizes one action; `admit` does both. Every
refusal raises an AccessDenied (401, 403 or 429 at HTTP) and is recorded as
`AccessRefused`, except tries from a source that must wait: the refusal that made it
wait is recorded, the flood after it is not. Failures are limited per source only where
the door knows one (HTTP's peer address); an empty source is not limited.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime

from events.identity import AccessRefused, Door
from services.errors import AccessDenied, Forbidden, TooManyFailures, Unauthenticated
from services.identity.authority import Action, Resource, authorize
from services.identity.limiter import FailureLimiter
from services.identity.names import InvalidName, normalise_name
from services.identity.principal import ANONYMOUS, Acting, Principal
from services.identity.verifier import Verifier, utcnow

Recorder = Callable[[AccessRefused], Awaitable[None]]


class Guard:
    def __init__(self, verifier: Verifier, record: Recorder, groups_of: Callable[[str], Sequence[str]], *,
                 limiter: FailureLimiter | None = None, clock: Callable[[], datetime] = utcnow,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.verifier, self.record, self.groups_of = verifier, record, groups_of
        self.limiter = limiter or FailureLimiter()
        self.clock, self.monotonic = clock, monotonic

    async def admit(self, credential: str | None, *, door: Door, action: Action, resource: Resource,
                    source: str = "", on_behalf_of: str | None = None) -> Acting:
        """Who acts, if they may do this; AccessDenied (recorded) if not."""
        acting = await self.authenticate(credential, door=door, action=action, target=resource.describe(),
                                         source=source, on_behalf_of=on_behalf_of)
        await self.permit(acting, action, resource, door=door, source=source)
        return acting

    async def authenticate(self, credential: str | None, *, door: Door, action: str = "sign_in", target: str = "",
                           source: str = "", on_behalf_of: str | None = None) -> Acting:
        """Who acts; Unauthenticated or Forbidden (recorded), EngineUnavailable if tokens cannot be checked now."""
        async def refuse(error: AccessDenied, principal: str = ANONYMOUS) -> AccessDenied:
            await self._record(error, principal=principal, door=door, action=action, target=target, source=source,
                               on_behalf_of=on_behalf_of)
            return error

        if source and (wait := self.limiter.wait(source, self.monotonic())):
            raise TooManyFailures(f"too many failed sign-ins from {source}; try again in {wait:.0f} s", wait)
        if not credential:
            raise await refuse(Unauthenticated("sign in first: send `Authorization: Bearer <token>`"))
        try:
            principal = await self.verifier.verify(credential)
        except Unauthenticated as err:
            if source and self.limiter.failed(source, self.monotonic()):
                wait = self.limiter.wait(source, self.monotonic())
                err = Unauthenticated(f"{err}; further tries from {source} must wait {wait:.0f} s", err.owner)
            raise await refuse(err, err.owner or ANONYMOUS) from None
        if not on_behalf_of:
            return Acting(principal)
        try:
            other = normalise_name(on_behalf_of)
        except InvalidName as err:
            raise await refuse(Forbidden(f"cannot act on behalf of {on_behalf_of[:80]!r}: {err}"),
                               principal.name) from None
        if other == principal.name:
            return Acting(principal)
        decision = authorize(principal, "act_on_behalf", Resource())
        if not decision.allowed:
            raise await refuse(Forbidden(f"only an admin may act on behalf of someone else: {decision.reason}"),
                               principal.name)
        return Acting(principal, on_behalf_of=other)

    def as_effective(self, acting: Acting) -> Principal:
        """The principal whose name and groups an action is judged by: on someone's behalf, that person's (with
        the acting admin's grants)."""
        if acting.on_behalf_of is None:
            return acting.principal
        return replace(acting.principal, name=acting.effective, groups=tuple(self.groups_of(acting.effective)))

    async def permit(self, acting: Acting, action: Action, resource: Resource, *, door: Door,
                     source: str = "") -> None:
        """Forbidden (recorded) unless the actor may do this. On someone's behalf, gates see that person."""
        decision = authorize(self.as_effective(acting), action, resource)
        if not decision.allowed:
            raise await self.forbid(acting, decision.reason, door=door, action=action, target=resource.describe(),
                                    source=source)

    async def forbid(self, acting: Acting, reason: str, *, door: Door, action: str, target: str,
                     source: str = "", code: str = "forbidden") -> Forbidden:
        """Record a refusal decided beside the table (say, a grant one may not pass on); returns the error to raise."""
        error = Forbidden(reason, code)
        await self._record(error, principal=acting.actor, door=door, action=action, target=target, source=source,
                           on_behalf_of=acting.on_behalf_of)
        return error

    async def refuse_request(self, error: AccessDenied, *, door: Door, action: str, source: str = "",
                             target: str = "") -> None:
        """Record a request refused for its shape before anyone was verified (another site, an unknown host)."""
        await self._record(error, principal=ANONYMOUS, door=door, action=action, target=target, source=source,
                           on_behalf_of=None)

    async def _record(self, error: AccessDenied, *, principal: str, door: Door, action: str, target: str,
                      source: str, on_behalf_of: str | None) -> None:
        await self.record(AccessRefused(at=self.clock(), principal=principal, door=door, action=action, target=target,
                                        code=error.code, reason=str(error), source=source,
                                        on_behalf_of=on_behalf_of))
