"""Host patterns, for where a secret may be sent and where a host parameter may point.

A pattern is a host name or an IP address (`api.example.com`, `10.0.0.7`, `[::1]`), matched
exactly and case-insensitively, or `*.` and a domain (`*.corp`), which matches any name below
that domain (`db.eu.corp`) but not the domain itself.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


def normalize_host(host: str) -> str:
    """Lower case, no trailing dot, no IPv6 brackets."""
    host = host.strip().lower().rstrip(".")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_host(text: str) -> bool:
    """A bare host name or IP address: no scheme, port, user, path or spaces."""
    host = normalize_host(text)
    if _NAME.fullmatch(host):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a host pattern, or None."""
    if not isinstance(pattern, str) or not is_host(pattern.removeprefix("*.")):
        return f"{pattern!r} is not a host name, an IP address or '*.' and a domain"
    return None


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """Whether `host` matches one of the patterns."""
    host = normalize_host(host)
    for pattern in patterns:
        pattern = normalize_host(pattern)
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
            return True
        if host == pattern:
            return True
    return False
