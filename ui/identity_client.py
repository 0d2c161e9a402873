"""A thin client of the identity service over NATS: create, list and revoke API tokens.

Every request carries the caller's token in `Authorization`; a creation sends a fresh
seal and opens the new secret with it, so the secret crosses NATS only sealed.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import msgspec
from nats.aio.client import Client as NATS

from events.json_limits import stored_decoder
from events import subjects
from events.codec import encode
from events.identity import (
    CreateToken, DEFAULT_TOKEN_SECONDS, Door, Grant, IdentityCommand, IdentityReply, ListTokens, PrincipalKind,
    RevokeToken, TokenInfo, caller_headers,
)
from services.errors import CommandRejected, EngineUnavailable
from services.identity.sealing import new_seal, unseal

_reply: Callable[[bytes], IdentityReply] = stored_decoder(IdentityReply)   # an answer of the engine


class IdentityClient:
    def __init__(self, nc: NATS, credential: str, *, on_behalf_of: str | None = None,
                 door: Door | None = None) -> None:
        self.nc, self.credential, self.on_behalf_of, self.door = nc, credential, on_behalf_of, door

    async def send(self, command: IdentityCommand, timeout: float = 10.0) -> IdentityReply:
        body = msgspec.json.decode(encode(command))
        body.pop("type", None)
        headers = caller_headers(self.credential, self.on_behalf_of, self.door)
        try:
            msg = await self.nc.request(subjects.identity_command(type(command).__name__), msgspec.json.encode(body),
                                        timeout=timeout, headers=headers)
        except Exception as err:
            if "no responders" in str(err).lower() or isinstance(err, (TimeoutError, asyncio.TimeoutError)):
                raise EngineUnavailable("the identity service did not answer: is `playbook up` running?") from err
            raise
        return _reply(msg.data)

    async def create(self, name: str, owner: str, grants: Sequence[Grant], *, kind: PrincipalKind = "person",
                     expires_in_seconds: float | None = DEFAULT_TOKEN_SECONDS) -> tuple[TokenInfo, str]:
        """The new token's record and its credential (shown once: it is stored only as a hash)."""
        key = new_seal()
        reply = _accepted(await self.send(CreateToken(name=name, owner=owner, kind=kind, grants=tuple(grants),
                                                      expires_in_seconds=expires_in_seconds, seal=key)))
        assert reply.token is not None and reply.sealed_secret is not None
        return reply.token, unseal(key, reply.sealed_secret)

    async def list(self, owner: str | None = None, *, everyone: bool = False,
                   include_inactive: bool = False) -> list[TokenInfo]:
        reply = await self.send(ListTokens(owner=owner, everyone=everyone, include_inactive=include_inactive))
        return _accepted(reply).tokens

    async def revoke(self, token_id: str, reason: str = "") -> TokenInfo | None:
        return _accepted(await self.send(RevokeToken(token_id=token_id, reason=reason))).token


def _accepted(reply: IdentityReply) -> IdentityReply:
    if not reply.accepted:
        assert reply.error is not None
        raise CommandRejected(reply.error.message, reply.error.code)
    return reply
