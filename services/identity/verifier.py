"""Credential -> Principal. Tokens are the default; an identity provider plugs in beside them.

The seam: a `Verifier` says whether a credential is its kind (`claims`, a cheap shape
test) and turns it into a Principal or raises Unauthenticated. `Verifiers` tries the
first that claims it. An OIDC/JWT verifier would claim three-part JWTs, check signature
(against the provider's JWKS), issuer, audience and expiry, normalise the subject or
email claim with `normalise_name`, take groups from a claim, and map groups to grants
with a policy of its own; the doors do not change.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Protocol

from services.errors import Unauthenticated
from services.identity.principal import Principal
from services.identity.registry import TokenRegistry
from services.identity.tokens import CREDENTIAL_PREFIX, TokenRecord, parse_credential, secret_matches


class Verifier(Protocol):
    def claims(self, credential: str) -> bool: ...
    async def verify(self, credential: str) -> Principal: ...


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class TokenVerifier:
    """Verifies `pbt_` tokens against the registry: no I/O on the way (the use is recorded behind)."""

    def __init__(self, registry: TokenRegistry, groups_of: Callable[[str], Sequence[str]],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.registry, self.groups_of, self.clock = registry, groups_of, clock

    def claims(self, credential: str) -> bool:
        return credential.startswith(CREDENTIAL_PREFIX)

    async def verify(self, credential: str) -> Principal:
        token_id, secret = parse_credential(credential)
        await self.registry.confirm_current()
        record = self.registry.get(token_id)
        if record is None or not secret_matches(secret, record.secret_hash):
            raise Unauthenticated("the token is not valid")
        now, owner = self.clock(), record.owner    # its secret matched: a refusal from here on is recorded as theirs
        _still_valid(record, now)
        if record.created.parent is not None:
            parent = self.registry.get(record.created.parent)
            if parent is None:
                raise Unauthenticated(f"session {token_id} was opened with a token this engine does not know", owner)
            _still_valid(parent, now, f"session {token_id} ended: its ")
        self.registry.note_use(token_id, now, credential)
        owner = record.owner
        return Principal(name=owner, kind=record.created.kind, groups=tuple(self.groups_of(owner)),
                         grants=record.grants, credential_id=token_id)


def _still_valid(record: TokenRecord, now: datetime, prefix: str = "") -> None:
    if record.unreadable is not None:
        raise Unauthenticated(f"{prefix}token {record.id} cannot be vouched for: this version of the engine cannot "
                              f"read one of its records, {record.unreadable}", record.owner)
    if (revoked := record.revoked) is not None:
        raise Unauthenticated(f"{prefix}token {record.id} was revoked by {revoked.actor} at "
                              f"{revoked.at:%Y-%m-%d %H:%M}Z", record.owner)
    if (expires := record.expires_at) is not None and now >= expires:
        raise Unauthenticated(f"{prefix}token {record.id} expired at {expires:%Y-%m-%d %H:%M}Z; ask for a new one",
                              record.owner)


class Verifiers:
    """The first verifier that claims a credential decides; none claiming it is a refusal."""

    def __init__(self, *verifiers: Verifier) -> None:
        self.verifiers = verifiers

    def claims(self, credential: str) -> bool:
        return any(v.claims(credential) for v in self.verifiers)

    async def verify(self, credential: str) -> Principal:
        for verifier in self.verifiers:
            if verifier.claims(credential):
                return await verifier.verify(credential)
        raise Unauthenticated("the credential is of no kind this engine accepts (it takes pbt_ tokens)")
