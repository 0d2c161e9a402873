"""Checks of one action argument's value: each answers a sentence naming the argument, or None when it is fine."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec

Check = Callable[[str, Any], "str | None"]


def of_kind(kinds: tuple[type, ...], what: str) -> Check:
    """A value of one of `kinds` (true and false are not numbers unless `bool` is named)."""
    def check(name: str, value: Any) -> str | None:
        if isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
            return None
        return f"{name!r} must be {what}, got {type(value).__name__}"
    return check


def both(first: Check, then: Check) -> Check:
    """`then` only on a value `first` accepts, so it may rely on the value's kind."""
    def check(name: str, value: Any) -> str | None:
        return first(name, value) or then(name, value)
    return check


A_STRING = of_kind((str,), "a string")
A_MAPPING = of_kind((dict,), "a mapping")
TRUE_OR_FALSE = of_kind((bool,), "true or false")


def _at_least_zero(name: str, value: int) -> str | None:
    return None if value >= 0 else f"{name!r} must be an integer >= 0, got {value}"


COUNT = both(of_kind((int,), "an integer >= 0"), _at_least_zero)   # bytes or items kept: never negative


def _finite_and_at_least_zero(name: str, value: float) -> str | None:
    return None if math.isfinite(value) and value >= 0 else f"{name!r} must be a number >= 0, got {value}"


SECONDS = both(of_kind((int, float), "a number of seconds"), _finite_and_at_least_zero)


def _scalars(name: str, values: list[Any]) -> str | None:
    """What a process or a server receives as text: YAML gives numbers and true/false too."""
    for value in values:
        if not isinstance(value, (str, int, float)):
            return f"{name!r} values must be strings or numbers, got {type(value).__name__}"
    return None


TEXT_MAPPING = both(A_MAPPING, lambda name, value: _scalars(name, list(value.values())))
TEXT_LIST = both(of_kind((list,), "a list"), _scalars)


def _not_blank(name: str, value: str | list[Any]) -> str | None:
    blank = not value.strip() if isinstance(value, str) else not value
    return f"{name!r} must not be empty" if blank else None


COMMAND = both(A_STRING, _not_blank)
ARGV = both(TEXT_LIST, _not_blank)


def _http_url(name: str, value: str) -> str | None:
    try:
        parts = urlsplit(value)
        fine = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        fine = False
    return None if fine else f"{name!r} must be an absolute http:// or https:// URL"


HTTP_URL = both(A_STRING, _http_url)


def _http_method(name: str, value: str) -> str | None:
    method = value.upper()
    return None if method.isalpha() else f"{name!r} must be an HTTP method such as GET or POST, got {method!r}"


HTTP_METHOD = both(A_STRING, _http_method)


def _one_line_each(name: str, value: dict[Any, Any]) -> str | None:
    """A line break in a header would start another header (header injection)."""
    for key, item in value.items():
        if any(c in f"{key}{item}" for c in "\r\n"):
            return f"{name!r}: {str(key)!r} contains a line break"
    return None


HEADERS = both(TEXT_MAPPING, _one_line_each)


def _status_codes(name: str, value: int | list[Any]) -> str | None:
    codes = [value] if isinstance(value, int) else value
    if all(isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes):
        return None
    return f"{name!r} must be status codes between 100 and 599"


STATUS_CODES = both(of_kind((int, list), "a status code or a list of them"), _status_codes)


def _integers(name: str, value: int | list[Any]) -> str | None:
    codes = [value] if isinstance(value, int) else value
    return None if all(isinstance(c, int) and not isinstance(c, bool) for c in codes) else \
        f"{name!r} must be a list of integers"


RETURN_CODES = both(of_kind((int, list), "an integer or a list of integers"), _integers)


def as_json(name: str, value: Any) -> str | None:
    try:
        msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError) as err:
        return f"{name!r} cannot be encoded as JSON: {err}"
    return None


def anything(name: str, value: Any) -> str | None:
    return None
