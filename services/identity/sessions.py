"""Dashboard sessions: a short-lived token opened with a person's token, kept in the registry like any other.

Opened and closed by the identity service alone, at a web server's request (`OpenSession`, `CloseSession`):
the web server, which faces HTTP, writes no token.

So every web replica knows every session (they all follow PB_IDENTITY), signing out is a
revocation, and a session ends at once when the token it was opened with is revoked or
expires (the verifier checks its `parent`). It carries the same grants, never more.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from events.identity import CreateToken, RevokeToken
from services.errors import Forbidden, Unauthenticated
from services.identity.principal import Acting
from services.identity.registry import TokenRegistry
from services.identity.store import IdentityStore
from services.identity.tokens import (
    TokenRecord, create, credential, hash_secret, new_secret, new_token_id, revoke,
)
from services.identity.verifier import utcnow

SESSION_SECONDS = 12 * 3600.0
SESSION_NAME = "dashboard session"


class Sessions:
    def __init__(self, store: IdentityStore, registry: TokenRegistry, *, seconds: float = SESSION_SECONDS,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store, self.registry, self.seconds, self.clock = store, registry, seconds, clock

    async def open(self, acting: Acting) -> str:
        """A session credential for this verified principal, opened with its token. Not with a session: the new
        one would end with the token, not with the session, so signing out would leave it signed in."""
        principal = acting.principal
        used = self.registry.get(principal.credential_id or "")
        if used is None:
            raise Unauthenticated("only a Playbook token can open a dashboard session")
        if used.created.parent is not None:
            raise Forbidden("a dashboard session cannot open another session; sign in with your API token")
        parent = used.id
        token_id, secret, now = new_token_id(), new_secret(), self.clock()
        request = CreateToken(name=SESSION_NAME, owner=principal.name, kind=principal.kind, grants=principal.grants,
                              expires_in_seconds=self.seconds)
        _, last = await self.store.change(token_id, lambda existing: create(
            existing, request, token_id=token_id, secret_hash=hash_secret(secret), by=acting, at=now, parent=parent))
        await self.registry.caught_up(last)
        return credential(token_id, secret)

    async def close(self, acting: Acting) -> TokenRecord | None:
        """Sign out: the session's token is revoked, on every replica within a second; the session, if it was one."""
        token_id = acting.principal.credential_id
        record = self.registry.get(token_id or "")
        if record is None or record.created.parent is None:
            return None     # signed in with a bearer token, not a session: nothing to end here
        now = self.clock()
        _, last = await self.store.change(record.id, lambda current: revoke(
            current, RevokeToken(token_id=record.id, reason="signed out"), by=acting, at=now))
        await self.registry.caught_up(last)
        return self.registry.get(record.id)
