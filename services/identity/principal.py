"""Who is asking, once verified: a principal, and who it acts for."""
from __future__ import annotations

from dataclasses import dataclass

from events.identity import Grant, PrincipalKind

ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified person or agent: its name, its directory groups and the grants of its credential."""

    name: str
    kind: PrincipalKind = "person"
    groups: tuple[str, ...] = ()
    grants: tuple[Grant, ...] = ()
    credential_id: str | None = None   # the token id (or an identity provider's subject), for the audit
    display_name: str = ""             # shown, never compared


@dataclass(frozen=True, slots=True)
class Acting:
    """The verified principal, and the person it acts for when an admin acts on someone's behalf.

    Events record both: `actor` is always the verified name; `on_behalf_of` the other one.
    """

    principal: Principal
    on_behalf_of: str | None = None

    @property
    def actor(self) -> str:
        return self.principal.name

    @property
    def effective(self) -> str:
        """The name a gate counts: the person acted for, else the actor."""
        return self.on_behalf_of or self.principal.name
