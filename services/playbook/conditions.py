"""`when` and `validations`: typed comparisons over resolved values."""
from __future__ import annotations

import re
from typing import Any

from events.playbook import Condition
from services.errors import PlaybookError
from services.playbook.interpolate import Context, resolve

_FALSE_WORDS = {"", "false", "no", "off", "0", "none", "null"}


class BadCondition(PlaybookError):
    """A condition that cannot be evaluated as written (unknown type, bad regex)."""


def evaluate(condition: Condition | str | bool | None, ctx: Context) -> bool:
    if condition is None:
        return True
    if isinstance(condition, bool):
        return condition
    if isinstance(condition, str):
        return truthy(resolve(condition, ctx))
    left = resolve(condition.left, ctx)
    right = resolve(condition.right, ctx)
    test = _TESTS.get(condition.type)
    if test is None:
        raise BadCondition(f"unknown condition type {condition.type!r}; use one of {', '.join(sorted(_TESTS))}")
    return test(left, right)


def condition_text(condition: Condition | str | bool | None, ctx: Context) -> str:
    """A short human sentence for logs: what was compared with what."""
    if not isinstance(condition, Condition):
        return f"{condition!r}"
    left, right = resolve(condition.left, ctx), resolve(condition.right, ctx)
    return f"{condition.type}({_short(left)}, {_short(right)})"


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _equal(left: Any, right: Any) -> bool:
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a == b
    if isinstance(left, bool) or isinstance(right, bool):
        return truthy(left) == truthy(right)
    if isinstance(left, str) or isinstance(right, str):
        return str(left) == str(right)
    return bool(left == right)


def _order(left: Any, right: Any) -> tuple[Any, Any]:
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a, b
    if isinstance(left, str) and isinstance(right, str):
        return left, right
    raise BadCondition(f"cannot order {_short(left)} and {_short(right)}: compare numbers or strings")


def _contains(left: Any, right: Any) -> bool:
    if isinstance(left, str):
        return str(right) in left
    if isinstance(left, (list, tuple)):
        return any(_equal(item, right) for item in left)
    if isinstance(left, dict):
        return right in left
    return False


def _matches(left: Any, right: Any) -> bool:
    try:
        return re.search(str(right), str(left)) is not None
    except re.error as err:
        raise BadCondition(f"bad regular expression {right!r}: {err}") from err


def _in(left: Any, right: Any) -> bool:
    if isinstance(right, (list, tuple)):
        return any(_equal(left, item) for item in right)
    if isinstance(right, str):
        return str(left) in right
    raise BadCondition(f"'in' needs a list or a string on the right, got {_short(right)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TESTS = {
    "equals": _equal,
    "not_equals": lambda a, b: not _equal(a, b),
    "contains": _contains,
    "not_contains": lambda a, b: not _contains(a, b),
    "http_status": _equal,
    "truthy": lambda a, _b: truthy(a),
    "falsy": lambda a, _b: not truthy(a),
    "greater_than": lambda a, b: (lambda x, y: x > y)(*_order(a, b)),
    "less_than": lambda a, b: (lambda x, y: x < y)(*_order(a, b)),
    "matches": _matches,
    "in": _in,
}
CONDITION_TYPES = frozenset(_TESTS)
