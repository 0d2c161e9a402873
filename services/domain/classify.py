"""Sort a failed step's error into a category: structured signals first, then configured patterns, then text."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeGuard, get_args

import msgspec

from events.run import ErrorCategory

_CATEGORIES: frozenset[str] = frozenset(get_args(ErrorCategory))
# The action knows these better than any text does; other hints are only a fallback.
_DECISIVE_HINTS: frozenset[str] = frozenset({"timeout", "configuration", "cancelled", "interrupted", "validation"})
_HTTP_STATUSES: dict[int, ErrorCategory] = {
    401: "authentication", 403: "authorization",
    408: "temporary", 425: "temporary", 429: "temporary", 502: "temporary", 503: "temporary", 504: "temporary",
    400: "permanent", 404: "permanent", 409: "permanent", 422: "permanent",
}
_EXIT_CODES: dict[int, ErrorCategory] = {
    126: "configuration",  # found but not executable
    127: "configuration",  # not found
    137: "resource",       # 128 + SIGKILL, as a shell reports it: most often the OOM killer
    -9: "resource",        # SIGKILL, as the shell action reports a killed direct child
}


class Classification(msgspec.Struct, frozen=True):
    category: ErrorCategory
    signal: str
    pattern: str | None = None


class Pattern(msgspec.Struct, frozen=True):
    """A configured regex (case-insensitive) that, when it matches the error text, decides the category."""

    regex: str
    category: ErrorCategory

    def __post_init__(self) -> None:
        _compiled(self.regex)


@lru_cache(maxsize=1024)
def _compiled(regex: str) -> re.Pattern[str]:
    try:
        return re.compile(regex, re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"pattern {regex!r} is not a valid regular expression: {err}") from None


def _status(codes: str) -> str:
    """A status code where the text says it is one, never a bare number ("line 503" is not a 503)."""
    return (rf"(?:\bHTTP(?:/[\d.]+)?\s+|\bstatus(?:[ _]?code)?[\s:=]*|returned error:\s*|\berror[:\s]+"
            rf"|\bcode[:=\s]+|^\s*|\b(?:got|received|response)\s+)(?:{codes})\b(?!\.\d)"
            rf"|\b(?:{codes}) (?:client|server) error")


# (category, regex, name): first match wins, so the specific stands before the general.
BUILTIN: list[tuple[ErrorCategory, str, str]] = [
    # Tool-specific sentences that would otherwise be caught by a general word inside them.
    ("authentication", r"password authentication failed", "psql password authentication failed"),
    ("temporary", r"the database system is (?:starting up|shutting down|in recovery mode)",
     "psql database starting up"),
    ("temporary", r"too many (?:connections|clients)", "too many connections"),
    ("temporary", r"could not get lock|unable to acquire the dpkg frontend lock", "apt lock held"),
    ("network", r"temporary failure (?:in name resolution|resolving)", "temporary failure in name resolution"),
    ("timeout", r"connection timed out during banner exchange", "ssh banner exchange timeout"),
    # The server we reached does not match what known_hosts says: fix known_hosts (or investigate);
    # no credential of ours is wrong, and trying again cannot help.
    ("configuration", r"host key verification failed|remote host identification has changed",
     "ssh host key verification failed"),
    ("authentication", r"permission denied \((?:publickey|password|keyboard-interactive)[^)]*\)",
     "ssh permission denied (publickey)"),
    ("configuration", r"certificate verify failed|ssl certificate problem|x509: certificate"
                      r"|ClientConnectorCertificateError|curl: \(60\)", "tls certificate invalid"),
    ("timeout", r"tls handshake timeout|ssl handshake timed out", "tls handshake timeout"),
    ("configuration", r'(?:database|role) "[^"]*" does not exist', "psql database or role does not exist"),
    ("network", r"cannot connect to the docker daemon", "docker daemon unreachable"),
    ("network", r"unable to connect to the server|the connection to the server \S+ was refused",
     "kubectl unable to connect to the server"),
    ("network", r"could not connect to server|connection to server (?:at|on) .* failed",
     "psql could not connect to server"),
    ("temporary", r"the server is currently unable", "the server is currently unable"),
    # curl reports by exit number; (22) carries an HTTP status, matched further down.
    ("network", r"curl: \((?:6|7|35|52|56)\)", "curl connection failure"),
    ("timeout", r"curl: \(28\)", "curl operation timed out"),
    # Network
    ("network", r"connection refused|econnrefused|\[errno 111\]", "connection refused"),
    ("network", r"connection reset|econnreset|\[errno 104\]", "connection reset"),
    ("network", r"connection timed out|etimedout|\[errno 110\]|connect timeout|ConnectTimeout", "connection timed out"),
    ("network", r"no route to host|network is unreachable|ehostunreach|enetunreach", "no route to host"),
    ("network", r"could not resolve|name or service not known|nodename nor servname|nxdomain"
                r"|no such host|\[errno -[23]\]|getaddrinfo failed|name resolution", "dns lookup failed"),
    ("network", r"\b(?:ClientConnectorError|ServerDisconnectedError|ClientOSError|ConnectionError)\b"
                r"|server disconnected|remote end closed connection|connection aborted", "connection error"),
    ("timeout", r"\b(?:ReadTimeout|ServerTimeoutError|TimeoutError)\b|read timed out|timed out|deadline exceeded"
                r"|i/o timeout", "timed out"),
    # HTTP statuses in text; the structured status_code, when present, was already decided.
    ("temporary", r"too many requests|rate.?limit|throttl|toomanyrequests|" + _status("429|408|425"),
     "too many requests"),
    ("temporary", r"service unavailable|bad gateway|gateway time-?out|" + _status("502|503|504"),
     "service unavailable"),
    ("dependency", r"internal server error|\b5\d\d server error|" + _status(r"5\d\d"), "server error"),
    ("authentication", r"unauthori[sz]ed|expired token|token (?:has |is )?expired|invalid credentials"
                       r"|authentication failed|authentication required|bad credentials|invalid api key|"
                       + _status("401"), "unauthorized"),
    ("authorization", r"forbidden|access denied|access is denied|not authorized|permission denied"
                      r"|operation not permitted|insufficient privileges|requested access to the resource is denied|"
                      + _status("403"), "forbidden"),
    # Resources
    ("resource", r"no space left on device|disk (?:is )?full|(?:not|n't have) enough (?:free )?space|enospc"
                 r"|quota exceeded", "no space left on device"),
    ("resource", r"out of memory|oom[- ]?kill|cannot allocate memory|memoryerror|enomem|killed by sigkill",
     "out of memory"),
    ("resource", r"too many open files|emfile", "too many open files"),
    # Configuration and validation
    ("configuration", r"invalid configuration|unknown (?:flag|option|command)|unrecognized (?:option|arguments?)"
                      r"|no such file|command not found|(?m::\s*not found$)|unable to locate package|unit \S+ not found"
                      r"|unit \S+ is masked|invalid argument", "invalid configuration"),
    ("validation", r"validation failed|failed validation|schema validation|is invalid:", "validation failed"),
    # Transient by their own account
    ("temporary", r"temporary failure|temporarily unavailable|try again|deadlock detected|could not serialize"
                  r"|eagain|lock wait timeout", "temporary failure"),
    ("permanent", r"not found|no such|does not exist|manifest unknown|" + _status("400|404|405|409|410|422"),
     "not found"),
]
_BUILTIN = [(category, _compiled(regex), regex, name) for category, regex, name in BUILTIN]


def classify(error: str, outputs: Mapping[str, Any], hint: str = "",
             extra_patterns: Sequence[Pattern] = ()) -> Classification:
    """The category of a failure, and which signal decided it."""
    if hint in _DECISIVE_HINTS:
        return Classification(hint, f"hint {hint}")  # type: ignore[arg-type]
    if isinstance(breaker := outputs.get("circuit_open"), str):   # failed fast: the target was never called
        return Classification("dependency", f"circuit {breaker} open")
    status = outputs.get("status_code")
    if _is_int(status) and status >= 400:
        category = _HTTP_STATUSES.get(status) or ("dependency" if status >= 500 else "permanent")
        return Classification(category, f"http status {status}")
    code = outputs.get("returncode")
    if _is_int(code) and code in _EXIT_CODES:
        return Classification(_EXIT_CODES[code], f"exit code {code}")
    parts = (error, outputs.get("stderr"), outputs.get("stdout"))
    text = "\n".join(part for part in parts if isinstance(part, str) and part)
    for configured in extra_patterns:
        if _compiled(configured.regex).search(text):
            return Classification(configured.category, f"configured pattern {configured.regex!r}", configured.regex)
    for category, compiled, regex, name in _BUILTIN:
        if compiled.search(text):
            return Classification(category, f"pattern {name!r}", regex)
    if hint in _CATEGORIES and hint != "unknown":
        return Classification(hint, f"fallback hint {hint}")  # type: ignore[arg-type]
    return Classification("unknown", "no match")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
