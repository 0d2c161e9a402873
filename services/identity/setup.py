"""Identity for one engine process, built once: streams, the registry that follows them, verifier and guard."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from msgspec.json import decode
from nats.aio.client import Client as NATS

from events import subjects
from events.identity import IdentityReply, caller_headers
from services.errors import EngineUnavailable

from services.identity.guard import Guard
from services.identity.limiter import FailureLimiter
from services.identity.registry import TokenRegistry, UseWriter
from services.identity.sessions import Sessions
from services.identity.store import IdentityStore
from services.identity.verifier import TokenVerifier, Verifier, Verifiers
from services.settings import ACCESS_MAX_BYTES

USE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Identity:
    store: IdentityStore
    registry: TokenRegistry
    verifier: Verifier
    guard: Guard
    sessions: Sessions

    @classmethod
    async def start(cls, nc: NATS, groups_of: Callable[[str], Sequence[str]], *, replicas: int = 1,
                    refusals_max_bytes: int = ACCESS_MAX_BYTES, writes_tokens: bool = True,
                    limiter: FailureLimiter | None = None, extra_verifiers: Sequence[Verifier] = ()) -> Identity:
        """Ensure PB_IDENTITY and PB_ACCESS, follow the tokens until current; `extra_verifiers` (say, OIDC)
        are tried after tokens. Without `writes_tokens` (the web server's login writes no token record), the
        streams must exist already and a token's use is recorded by the identity service, on request."""
        store = IdentityStore(nc)
        if writes_tokens:
            await store.ensure_streams(replicas, refusals_max_bytes)
        registry = TokenRegistry(store, write_use=None if writes_tokens else _asking_identity(nc))
        await registry.start()
        verifier = Verifiers(TokenVerifier(registry, groups_of), *extra_verifiers)
        return cls(store, registry, verifier, Guard(verifier, store.record_refusal, groups_of, limiter=limiter),
                   Sessions(store, registry))

    async def stop(self) -> None:
        await self.registry.stop()


def _asking_identity(nc: NATS) -> UseWriter:
    """A use recorded by the identity service: it verifies the credential, which records the use."""
    async def ask(_token_id: str, _at: datetime, credential: str) -> None:
        reply = await nc.request(subjects.identity_command("RecordUse"), b"{}", timeout=USE_TIMEOUT,
                                 headers=caller_headers(credential))
        answer = decode(reply.data, type=IdentityReply)
        if not answer.accepted and answer.error is not None:
            raise EngineUnavailable(f"the identity service did not record it: {answer.error.message}")
    return ask
