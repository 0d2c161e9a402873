"""The secrets one step attempt holds: resolved through the source, redacted, and kept to their hosts."""
from __future__ import annotations

from collections.abc import Iterable

from services.hosts import host_allowed
from services.secrets.redaction import Redactor, redactor_for
from services.secrets.source import Secret, SecretRefused, SecretSource


class AttemptSecrets:
    """`values` is every secret to redact from the attempt's text: what it resolved and what its run may use."""

    def __init__(self, source: SecretSource, values: set[str] | None = None) -> None:
        self.source = source
        self.values = set() if values is None else values
        self._restricted: dict[str, Secret] = {}

    def get(self, name: str) -> str | None:
        """Resolve `${secret:name}` for the attempt; raises SecretRefused for a secret that may not be used."""
        found = self.source.secret(name)
        if found is None:
            return None
        self._remember(found)
        return found.value

    def include(self, names: Iterable[str]) -> None:
        """Redact these secrets too (those the run may use), whether or not this attempt resolves them."""
        for name in names:
            try:
                found = self.source.secret(name)
            except SecretRefused:   # refused where it is used; nothing usable to hide
                continue
            if found is not None:
                self._remember(found)

    @property
    def redactor(self) -> Redactor:
        return redactor_for(self.values)

    def restricted_in(self, texts: Iterable[str]) -> list[Secret]:
        """The secrets with `allowed_hosts` that these texts (a request's URL, headers, body) contain."""
        texts = list(texts)
        return [secret for value, secret in self._restricted.items() if any(value in text for text in texts)]

    def _remember(self, found: Secret) -> None:
        self.values.add(found.value)
        if found.allowed_hosts is not None:
            self._restricted[found.value] = found


def refusal(host: str, carried: Iterable[Secret]) -> str | None:
    """Why a request to `host` may not carry these secrets, or None if each of them may go there."""
    for secret in carried:
        if secret.allowed_hosts is not None and not host_allowed(host, secret.allowed_hosts):
            where = ", ".join(secret.allowed_hosts) or "no host at all"
            return (f"secret {secret.name!r} may be sent only to {where}, and this request would carry it to "
                    f"{host}; nothing was sent (add the host to the secret's allowed_hosts if it belongs there)")
    return None
