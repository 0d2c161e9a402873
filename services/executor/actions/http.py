"""http_request: one HTTP call through a shared session, its outcome sorted into error categories.

A request that would carry a secret to a host outside the secret's `allowed_hosts` (at the
first hop or after a redirect) is refused before it connects. A cut body never ends inside
a secret the attempt holds.
"""
from __future__ import annotations

import asyncio
import math
import os
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from events.run import ErrorCategory
from services.executor.scope import current_scope
from services.playbook.actions import ACTION_SPECS, MAX_BODY_BYTES
from services.secrets import AttemptSecrets, Redactor, SecretRefused
from services.secrets.attempt import refusal

from .base import Action, ActionArgsError, ActionResult, arg, cut_before_secret, text_map

_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def _session() -> aiohttp.ClientSession:
    """The running loop's session: pooled connections, and no cookies carried from one step to another."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        for stale in [other for other in _sessions if other.is_closed()]:
            del _sessions[stale]
        # No aiohttp timeouts: run_action bounds the whole call with the step's timeout.
        session = _sessions[loop] = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout())
    return session


async def close_http_session() -> None:
    """Close the running loop's shared session; call it when the executor shuts down."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


async def run_http_request(args: dict[str, Any]) -> ActionResult:
    """Send the request and judge its status; connection trouble becomes a failed result."""
    url = _url(args)
    method = arg(args, "method", "GET").upper()
    expected = _expected_statuses(args)
    limit = arg(args, "max_body_bytes", MAX_BODY_BYTES)
    request = {
        "headers": text_map(args, "headers"),
        "params": text_map(args, "params"),
        "data": _body(args),
        "allow_redirects": arg(args, "follow_redirects", True),
        "ssl": arg(args, "verify_tls", True),
    }
    # Error text names the origin and path, not the query: queries carry tokens (?api_key=...); a
    # ${secret:...} in the path is redacted from it like everywhere else.
    target = f"{method} {url.origin()}{url.path}" + ("?..." if url.query_string else "")
    scope = current_scope()
    guard = _secret_guard(scope.secrets, args) if scope else None
    started = time.perf_counter()
    try:
        async with _session().request(method, url, **request, middlewares=guard) as response:
            head, truncated = await _read_head(response, limit)
    except SecretRefused as refused:
        return _failed(f"{target}: {refused}", "configuration")
    except aiohttp.ClientConnectorCertificateError:
        return _failed(f"{target}: the server's TLS certificate failed verification", "configuration")
    except aiohttp.ClientConnectorError as err:
        return _failed(f"{target}: cannot connect: {_reason(err.os_error)}", "network")
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as err:
        return _failed(f"{target}: the connection failed: {err}", "network")
    except aiohttp.TooManyRedirects:
        return _failed(f"{target}: too many redirects", "permanent")
    except aiohttp.InvalidURL:
        return _failed(f"{target}: redirected to an invalid URL", "permanent")
    except aiohttp.ClientResponseError as err:
        return _failed(f"{target}: the server sent an invalid response: {err.message}", "dependency")
    outputs = _outputs(response, head, truncated, limit, started, scope.secrets.redactor if scope else None)
    if response.status in expected if expected else response.status < 400:
        return ActionResult(ok=True, outputs=outputs)
    wanted = " or ".join(map(str, sorted(expected))) if expected else "a status below 400"
    return ActionResult(
        ok=False, outputs=outputs, category=_status_category(response.status),
        error=f"{target} returned HTTP {response.status} {response.reason or ''}".rstrip() + f", expected {wanted}",
    )


def _secret_guard(secrets: AttemptSecrets, args: dict[str, Any]) -> tuple[Any, ...] | None:
    """A middleware that checks every hop's host against the secrets the request carries; None if it carries none."""
    carried = secrets.restricted_in(text for name in ("url", "headers", "params", "json", "data")
                                    for text in _texts(args.get(name)))
    if not carried:
        return None

    async def keep_secrets_home(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        if problem := refusal(request.url.host or "", carried):
            raise SecretRefused(problem)
        return await handler(request)
    return (keep_secrets_home,)


def _texts(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (str(key), *_texts(item))]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    return [] if value is None else [str(value)]


def _failed(error: str, category: ErrorCategory) -> ActionResult:
    return ActionResult(ok=False, error=error, category=category)


def _reason(error: OSError) -> str:
    """'Connection refused' rather than asyncio's 'Connect call failed (host, port)'."""
    if error.errno and error.errno > 0:
        return os.strerror(error.errno)
    return error.strerror or str(error)  # resolver errors have negative numbers of their own


def _url(args: dict[str, Any]) -> URL:
    try:
        return URL(args["url"])
    except (ValueError, TypeError) as err:   # the rules read URLs as urllib does; yarl may still refuse one
        raise ActionArgsError(f"'url' cannot be read as a URL: {err}") from None


def _body(args: dict[str, Any]) -> aiohttp.BytesPayload | str | None:
    if (document := args.get("json")) is not None:
        return aiohttp.BytesPayload(msgspec.json.encode(document), content_type="application/json")
    return arg(args, "data")


def _expected_statuses(args: dict[str, Any]) -> frozenset[int]:
    statuses = arg(args, "expect_status", [])
    return frozenset([statuses] if isinstance(statuses, int) else statuses)


async def _read_head(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    try:
        head = await response.content.readexactly(limit + 1)
    except asyncio.IncompleteReadError as short:
        return short.partial, False
    return head[:limit], True


def _outputs(response: aiohttp.ClientResponse, head: bytes, truncated: bool, limit: int,
             started: float, redactor: Redactor | None) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    try:
        body = head.decode(response.charset or "utf-8", errors="replace")
    except LookupError:
        body = head.decode(errors="replace")
    outputs: dict[str, Any] = {"status_code": response.status, "headers": headers, "body": body}
    if truncated:
        outputs["body"] = f"{cut_before_secret(body, redactor)}\n[... truncated after {limit} bytes]"
    elif head:
        try:
            outputs["json"] = msgspec.json.decode(head)
        except msgspec.DecodeError:
            pass
    if (retry_after := _retry_after(headers.get("retry-after", ""))) is not None:
        outputs["retry_after"] = retry_after
    outputs["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return outputs


def _retry_after(value: str) -> float | None:
    """Seconds to wait, from either form of Retry-After: delta-seconds or an HTTP-date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _status_category(status: int) -> ErrorCategory:
    if status == 401:
        return "authentication"
    if status == 403:
        return "authorization"
    if status in (429, 503):
        return "temporary"
    if status >= 500:
        return "dependency"
    return "permanent"


HTTP_REQUEST = Action(run=run_http_request, spec=ACTION_SPECS["http_request"])
