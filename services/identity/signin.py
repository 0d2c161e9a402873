"""One-time sign-in codes: `playbook up` prints a link, the browser trades the code for a session.

A code is 128 random bits, good for `ttl` seconds and for one exchange; only its hash is
kept. The link carries it in the URL fragment (`#code=`), which browsers never send to a
server, so it stays out of access logs and Referer headers: the page posts it.
"""
from __future__ import annotations

import hashlib
import secrets
from urllib.parse import quote

from services.errors import Unauthenticated

CODE_SECONDS = 120.0
MAX_CODES = 100


def _key(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def sign_in_link(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/#code={quote(code)}"


class SignInCodes:
    """Codes waiting to be exchanged, each for one credential; in the memory of the web process."""

    def __init__(self, *, ttl: float = CODE_SECONDS, max_codes: int = MAX_CODES) -> None:
        self.ttl, self.max_codes = ttl, max_codes
        self._codes: dict[str, tuple[str, float]] = {}   # hash of code -> (credential, expires)

    def issue(self, credential: str, now: float) -> str:
        self._forget_expired(now)
        if len(self._codes) >= self.max_codes:
            self._codes.pop(next(iter(self._codes)))
        code = secrets.token_urlsafe(16)
        self._codes[_key(code)] = (credential, now + self.ttl)
        return code

    def redeem(self, code: str, now: float) -> str:
        """The credential the code stands for; the code is spent whatever the outcome."""
        found = self._codes.pop(_key(code), None) if len(code) <= 64 else None
        if found is None:
            raise Unauthenticated("this sign-in link is unknown or was already used; ask for a new one")
        credential, expires = found
        if now >= expires:
            raise Unauthenticated("this sign-in link expired; ask for a new one")
        return credential

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, (_, expires) in self._codes.items() if now >= expires]:
            del self._codes[key]
