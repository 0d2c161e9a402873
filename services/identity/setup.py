"""Identity for one engine process, built once: streams, the registry that follows them, verifier and guard."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nats.aio.client import Client as NATS

from services.identity.guard import Guard
from services.identity.limiter import FailureLimiter
from services.identity.registry import TokenRegistry
from services.identity.sessions import Sessions
from services.identity.store import IdentityStore
from services.identity.verifier import TokenVerifier, Verifier, Verifiers
from services.settings import ACCESS_MAX_BYTES


@dataclass(frozen=True, slots=True)
class Identity:
    store: IdentityStore
    registry: TokenRegistry
    verifier: Verifier
    guard: Guard
    sessions: Sessions

    @classmethod
    async def start(cls, nc: NATS, groups_of: Callable[[str], Sequence[str]], *, replicas: int = 1,
                    refusals_max_bytes: int = ACCESS_MAX_BYTES,
                    limiter: FailureLimiter | None = None, extra_verifiers: Sequence[Verifier] = ()) -> Identity:
        """Ensure PB_IDENTITY and PB_ACCESS, follow the tokens until current; `extra_verifiers` (say, OIDC)
        are tried after tokens."""
        store = IdentityStore(nc)
        await store.ensure_streams(replicas, refusals_max_bytes)
        registry = TokenRegistry(store)
        await registry.start()
        verifier = Verifiers(TokenVerifier(registry, groups_of), *extra_verifiers)
        return cls(store, registry, verifier, Guard(verifier, store.record_refusal, groups_of, limiter=limiter),
                   Sessions(store, registry))

    async def stop(self) -> None:
        await self.registry.stop()
