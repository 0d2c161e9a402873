"""The local admin: on first `playbook up`, a principal and a token the local CLI finds by itself.

Whoever starts the engine on a machine already owns it (they can read its store and run
any shell), so the local admin also holds the unsafe_shell grant. The token never
expires; it is written to `credentials/token` (0600). A later `up` reuses it while it is
still valid and issues a new one otherwise (revoked, expired, or a new stream).
"""
from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from events.identity import CreateToken, Grant
from services.errors import Unauthenticated
from services.identity.credentials import TOKEN_FILE, read_secret, write_secret
from services.identity.names import InvalidName, normalise_name
from services.identity.principal import Acting, Principal
from services.identity.registry import TokenRegistry
from services.identity.store import IdentityStore
from services.identity.tokens import create, credential, hash_secret, new_secret, new_token_id, parse_credential
from services.identity.tokens import secret_matches

LOCAL_ADMIN_GRANTS = (Grant(role="admin"), Grant(role="unsafe_shell"))
SYSTEM = Acting(Principal(name="system"))


@dataclass(frozen=True, slots=True)
class LocalAdmin:
    name: str
    credential: str
    created: bool


def local_admin_name(preferred: str | None = None) -> str:
    """The login name (or `preferred`), normalised; `admin` when it cannot be a principal name."""
    try:
        return normalise_name(preferred or getpass.getuser())
    except (InvalidName, OSError, KeyError):
        return "admin"


def _still_valid(registry: TokenRegistry, text: str | None, now: datetime) -> str | None:
    """The owner of the stored credential, if it is still an active admin token."""
    if not text:
        return None
    try:
        token_id, secret = parse_credential(text)
    except Unauthenticated:
        return None
    record = registry.get(token_id)
    if record is None or record.status(now) != "active" or not secret_matches(secret, record.secret_hash):
        return None
    return record.owner if any(g.role == "admin" for g in record.grants) else None


async def ensure_local_admin(home: Path, store: IdentityStore, registry: TokenRegistry, *, name: str,
                             now: datetime) -> LocalAdmin:
    """The local admin's credential: the stored one while valid, else a new one (the registry must be current)."""
    registry.require_current()
    stored = read_secret(home, TOKEN_FILE)
    if owner := _still_valid(registry, stored, now):
        return LocalAdmin(owner, stored, created=False)  # type: ignore[arg-type]
    token_id, secret = new_token_id(), new_secret()
    request = CreateToken(name="local admin (playbook up)", owner=name, grants=LOCAL_ADMIN_GRANTS,
                          expires_in_seconds=None)
    _, last = await store.change(token_id, lambda existing: create(
        existing, request, token_id=token_id, secret_hash=hash_secret(secret), by=SYSTEM, at=now))
    await registry.caught_up(last)
    text = credential(token_id, secret)
    write_secret(home, TOKEN_FILE, text + "\n")
    return LocalAdmin(normalise_name(name), text, created=True)
