"""Identity events and commands: API tokens and refused access.

Token events live on `pb.identity.token.<id>.<Type>` in stream PB_IDENTITY; refusals on
`pb.identity.refused.<door>.AccessRefused` in stream PB_ACCESS. Identity commands are
requests on `pb.cmd.identity.<Command>`, answered with an `IdentityReply`.
"""
from __future__ import annotations

from collections.abc import Callable

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from events.commands import Rejection
from events.json_limits import stored_decoder
from events.subjects import TokenId

Role = Literal["viewer", "operator", "approver", "admin", "unsafe_shell"]
PrincipalKind = Literal["person", "agent"]
Door = Literal["http", "nats", "cli", "dashboard", "mcp"]
TokenStatus = Literal["active", "expired", "revoked"]

Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Reason = Annotated[str, msgspec.Meta(max_length=500)]
DEFAULT_TOKEN_SECONDS = 90 * 24 * 3600


class Grant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A role on the playbooks and environments whose names match these glob patterns."""

    role: Role
    playbooks: Annotated[tuple[Pattern, ...], msgspec.Meta(min_length=1, max_length=16)] = ("*",)
    environments: Annotated[tuple[Pattern, ...], msgspec.Meta(min_length=1, max_length=16)] = ("*",)


Grants = Annotated[tuple[Grant, ...], msgspec.Meta(max_length=32)]


class IdentityEvent(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    at: datetime


class TokenEvent(IdentityEvent, frozen=True):
    token_id: str


class TokenCreated(TokenEvent, frozen=True):
    """A token was issued; only the hash of its secret is ever stored. A dashboard session is a short-lived
    token whose `parent` is the token it was opened with: it ends when that one is revoked or expires."""

    name: str
    owner: str
    secret_hash: str
    actor: str
    kind: PrincipalKind = "person"
    grants: tuple[Grant, ...] = ()
    expires_at: datetime | None = None
    on_behalf_of: str | None = None
    parent: str | None = None


class TokenRevoked(TokenEvent, frozen=True):
    actor: str
    reason: str = ""
    on_behalf_of: str | None = None


class TokenUsed(TokenEvent, frozen=True):
    """The token was last used at `at`: written at most once a minute per token, the stream keeps the latest."""


AnyTokenEvent = TokenCreated | TokenRevoked | TokenUsed
TOKEN_EVENT_TYPES: tuple[type[TokenEvent], ...] = AnyTokenEvent.__args__
decode_token_event: Callable[[bytes], TokenEvent] = stored_decoder(AnyTokenEvent)


class AccessRefused(IdentityEvent, frozen=True):
    """Someone was turned away at a door: not signed in, not allowed, or too many failures."""

    principal: str                # the verified name, or "anonymous"
    door: Door
    action: str
    code: str                     # unauthenticated, forbidden, too_many_failures
    reason: str
    target: str = ""
    source: str = ""              # the caller's address, where the door knows it
    on_behalf_of: str | None = None


class BackupTaken(IdentityEvent, frozen=True):
    """Every record of the engine was copied (`playbook backup`), with its credentials and secrets: by whom (the
    local user holding the engine's NATS login), into which directory, and how many messages of each stream."""

    actor: str                    # `local:<user>`: only the engine's own user may read the login it takes
    target: str
    streams: dict[str, int] = {}
    files: tuple[str, ...] = ()


decode_access_refused: Callable[[bytes], AccessRefused] = stored_decoder(AccessRefused)
decode_access_record: Callable[[bytes], AccessRefused | BackupTaken] = stored_decoder(AccessRefused | BackupTaken)
IDENTITY_EVENT_TYPES: tuple[type[IdentityEvent], ...] = (*TOKEN_EVENT_TYPES, AccessRefused, BackupTaken)


# -- commands, on pb.cmd.identity.<Command>; the caller is the token in the Authorization header --

class IdentityCommand(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True,
                      forbid_unknown_fields=True):
    pass


class CreateToken(IdentityCommand, frozen=True):
    """Issue a token. `seal` (64 hex digits, random per request) encrypts the secret in the reply:
    requests reach only the engine, replies travel on inboxes other clients may read."""

    name: Name
    owner: Name
    kind: PrincipalKind = "person"
    grants: Grants = ()
    expires_in_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = DEFAULT_TOKEN_SECONDS
    seal: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")] | None = None


class RevokeToken(IdentityCommand, frozen=True):
    token_id: TokenId
    reason: Reason = ""


class ListTokens(IdentityCommand, frozen=True):
    """Tokens of one owner (default: the caller; anyone may list their own), or of `everyone` (admin)."""

    owner: Name | None = None
    everyone: bool = False
    include_inactive: bool = False


class OpenSession(IdentityCommand, frozen=True):
    """Open a dashboard session with the caller's token (a web server asks, for the person signing in): a
    short-lived token of the same person and grants, its secret sealed with `seal` in the reply."""

    seal: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class CloseSession(IdentityCommand, frozen=True):
    """Sign out: the session the caller's credential is, revoked (a token that is no session: nothing)."""


class RecordUse(IdentityCommand, frozen=True):
    """The caller's token was just used at a web server, which writes no token record: verifying it here records
    the use (at most once a minute per token), as any identity request does."""


AnyIdentityCommand = CreateToken | RevokeToken | ListTokens | OpenSession | CloseSession | RecordUse
IDENTITY_COMMAND_TYPES: tuple[type[IdentityCommand], ...] = AnyIdentityCommand.__args__


class TokenInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What anyone may see of a token: never its secret, nor its hash."""

    id: str
    name: str
    owner: str
    kind: PrincipalKind
    grants: tuple[Grant, ...]
    status: TokenStatus
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    last_used_at: datetime | None = None
    parent: str | None = None


class IdentityReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    accepted: bool
    token: TokenInfo | None = None
    tokens: list[TokenInfo] = []
    sealed_secret: str | None = None     # the new token, sealed with the request's `seal`
    error: Rejection | None = None


# -- how a request says who sends it (NATS headers, as at HTTP) --------------------------------

AUTHORIZATION = "Authorization"
ON_BEHALF_OF = "Playbook-On-Behalf-Of"
DOOR = "Playbook-Door"      # the door a command came in by (a label for the refusal records, never a proof)
FORWARDING_DOORS: tuple[Door, ...] = ("http", "cli", "dashboard", "mcp")


def caller_headers(credential: str, on_behalf_of: str | None = None, door: Door | None = None) -> dict[str, str]:
    headers = {AUTHORIZATION: f"Bearer {credential}"}
    if on_behalf_of:
        headers[ON_BEHALF_OF] = on_behalf_of
    if door:
        headers[DOOR] = door
    return headers


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """Who a request says sends it: the credential, the person an admin acts for, the door it came by."""

    credential: str | None = None
    on_behalf_of: str | None = None
    door: Door = "nats"

    @classmethod
    def of(cls, headers: dict[str, str] | None) -> Caller:
        headers = headers or {}
        door = headers.get(DOOR, "")
        return cls(credential=bearer(headers), on_behalf_of=headers.get(ON_BEHALF_OF) or None,
                   door=next((d for d in FORWARDING_DOORS if d == door), "nats"))


def bearer(headers: dict[str, str] | None) -> str | None:
    """The credential of `Authorization: Bearer <credential>`, or None."""
    scheme, _, value = (headers or {}).get(AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None
