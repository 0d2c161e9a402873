"""API tokens, pure: the credential format, the stored hash, a token's state and its decisions.

A credential reads `pbt_<id>_<secret>`: the id (16 hex digits, not secret) finds the
record without scanning; the secret (256 random bits) is checked against the stored
SHA-256 in constant time. A single fast hash is right here: slow password hashes exist
for guessable secrets, and a 256-bit random one is not guessable.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from events import subjects
from events.identity import CreateToken, RevokeToken, TokenCreated, TokenEvent, TokenInfo
from events.identity import TokenRevoked, TokenStatus, TokenUsed
from services.errors import CommandRejected, Unauthenticated
from services.identity.names import InvalidName, normalise_name
from services.identity.principal import Acting

CREDENTIAL_PREFIX = "pbt_"
_CREDENTIAL = re.compile(rf"pbt_({subjects.TOKEN_ID_PATTERN})_([A-Za-z0-9_-]{{43}})")


def new_token_id() -> str:
    return secrets.token_hex(8)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def credential(token_id: str, secret: str) -> str:
    return f"{CREDENTIAL_PREFIX}{token_id}_{secret}"


def parse_credential(text: str) -> tuple[str, str]:
    """(token id, secret) of a credential, or Unauthenticated if it is not one."""
    found = _CREDENTIAL.fullmatch(text) if len(text) <= 100 else None
    if found is None:
        raise Unauthenticated("the credential is not a Playbook token (pbt_<id>_<secret>)")
    return found[1], found[2]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


@dataclass(slots=True)
class TokenRecord:
    """A token as its events left it; `version` is the stream sequence of its last event."""

    created: TokenCreated
    revoked: TokenRevoked | None = None
    last_used_at: datetime | None = None
    version: int = 0
    # An event of this token that this version cannot read (a newer engine's, say a suspension): the token is
    # refused rather than trusted on the events it can read.
    unreadable: str | None = None

    id = property(lambda self: self.created.token_id)
    owner = property(lambda self: self.created.owner)
    grants = property(lambda self: self.created.grants)
    secret_hash = property(lambda self: self.created.secret_hash)
    expires_at = property(lambda self: self.created.expires_at)

    def status(self, now: datetime) -> TokenStatus:
        if self.revoked is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def info(self, now: datetime) -> TokenInfo:
        created, revoked = self.created, self.revoked
        return TokenInfo(id=created.token_id, name=created.name, owner=created.owner, kind=created.kind,
                         grants=created.grants, status=self.status(now), created_at=created.at,
                         created_by=created.actor, expires_at=created.expires_at,
                         revoked_at=revoked.at if revoked else None, revoked_by=revoked.actor if revoked else None,
                         last_used_at=self.last_used_at, parent=created.parent)


def evolve(record: TokenRecord | None, event: TokenEvent, seq: int) -> TokenRecord | None:
    """Apply one event; a revocation or use of a token never created leaves nothing."""
    match event:
        case TokenCreated():
            return TokenRecord(created=event, version=seq)
        case TokenRevoked() if record is not None:
            record.revoked, record.version = event, seq
        case TokenUsed() if record is not None:
            record.last_used_at, record.version = max(event.at, record.last_used_at or event.at), seq
    return record


# -- decisions ------------------------------------------------------------------------------------

def create(existing: TokenRecord | None, cmd: CreateToken, *, token_id: str, secret_hash: str, by: Acting,
           at: datetime, parent: str | None = None) -> list[TokenCreated]:
    """Issue a token (a session when `parent` names the token it is opened with); the id and the secret's hash
    come from the edge (no randomness here)."""
    if existing is not None:
        raise CommandRejected(f"token id {token_id} is taken; create the token again", "conflict")
    if not cmd.name.isprintable():
        raise CommandRejected("a token name must be printable text", "bad_request")
    try:
        owner = normalise_name(cmd.owner)
    except InvalidName as err:
        raise CommandRejected(str(err), "bad_request") from None
    try:
        expires_at = at + timedelta(seconds=cmd.expires_in_seconds) if cmd.expires_in_seconds else None
    except OverflowError:   # past the year 9999
        raise CommandRejected(f"an expiry {cmd.expires_in_seconds:g} seconds from now is beyond the calendar; give "
                              "a shorter one, or never", "bad_request") from None
    grants = tuple(dict.fromkeys(cmd.grants))
    return [TokenCreated(at=at, token_id=token_id, name=cmd.name, owner=owner, kind=cmd.kind, grants=grants,
                         secret_hash=secret_hash, expires_at=expires_at, actor=by.actor,
                         on_behalf_of=by.on_behalf_of, parent=parent)]


def revoke(record: TokenRecord | None, cmd: RevokeToken, *, by: Acting, at: datetime) -> list[TokenRevoked]:
    """Revoke a token for good; revoking it again changes nothing."""
    if record is None:
        raise CommandRejected(f"no token with id {cmd.token_id!r}; `playbook token list` shows them", "unknown_token")
    if record.revoked is not None:
        return []
    return [TokenRevoked(at=at, token_id=record.id, actor=by.actor, reason=cmd.reason, on_behalf_of=by.on_behalf_of)]
