"""`when` and `validations`: typed comparisons over resolved values, combined with all, any and not."""
from __future__ import annotations

import math
import re
from typing import Any

from collections.abc import Hashable, Iterator

from events.playbook import Condition, When
from services.errors import PlaybookError
from services.playbook.diagnostics import Issue, Path, did_you_mean, format_path, short
from services.playbook.interpolate import Context, resolve
from services.playbook.regexes import BadRegex, regex_problem, searches

_FALSE_WORDS = {"", "false", "no", "off", "0", "none", "null"}


class BadCondition(PlaybookError):
    """A condition that cannot be evaluated as written (unknown type, bad regex)."""


def evaluate(condition: When | None, ctx: Context) -> bool:
    """Whether the condition holds; a list holds when every item does, text when it is not empty or false."""
    if condition is None:
        return True
    if isinstance(condition, bool):
        return condition
    if isinstance(condition, str):
        return truthy(resolve(condition, ctx))
    if isinstance(condition, list):
        return all(evaluate(item, ctx) for item in condition)
    if condition.all_ is not None:
        return all(evaluate(item, ctx) for item in condition.all_)
    if condition.any_ is not None:
        return any(evaluate(item, ctx) for item in condition.any_)
    if condition.not_ is not None:
        return not evaluate(condition.not_, ctx)
    left = resolve(condition.left, ctx)
    right = resolve(condition.right, ctx)
    test = _TESTS.get(condition.type or "")
    if test is None:
        raise BadCondition(f"unknown condition type {condition.type!r}; use one of {', '.join(sorted(_TESTS))}")
    return test(left, right)


def condition_text(condition: When | None, ctx: Context) -> str:
    """A short human sentence for logs: what was compared with what."""
    if isinstance(condition, list):
        return "all(" + ", ".join(condition_text(item, ctx) for item in condition) + ")"
    if not isinstance(condition, Condition):
        return f"{condition!r}"
    for word, items in (("all", condition.all_), ("any", condition.any_)):
        if items is not None:
            return f"{word}(" + ", ".join(condition_text(item, ctx) for item in items) + ")"
    if condition.not_ is not None:
        return f"not({condition_text(condition.not_, ctx)})"
    left, right = resolve(condition.left, ctx), resolve(condition.right, ctx)
    return f"{condition.type}({short(left)}, {short(right)})"


def condition_issues(condition: When | None, path: Path, shown_from: int = 2) -> Iterator[Issue]:
    """What is wrong with a condition as written: each is one of type, all, any, not; types exist;
    text that compares (an Ansible habit) would only be tested for being empty."""
    if condition is None or isinstance(condition, bool):
        return
    if isinstance(condition, str):
        if _COMPARES.search(_REFERENCE.sub("x", condition)):
            label = f"'{format_path(path[shown_from:])}'"
            yield Issue("PB106", f"{label} is text, which only says whether it is empty (or false, no, 0), so "
                                 f"{condition!r} always holds; write a condition instead{_suggestion(condition)}", path)
        return
    if isinstance(condition, list):
        for i, item in enumerate(condition):
            yield from condition_issues(item, path + (i,), shown_from)
        return
    label = f"'{format_path(path[shown_from:])}'"
    given = [word for word, value in (("type", condition.type), ("all", condition.all_), ("any", condition.any_),
                                      ("not", condition.not_)) if value is not None]
    if not given:
        yield Issue("PB102", f"{label} is missing the required key 'type' (a comparison), or 'all', 'any' or 'not' "
                             "to combine conditions", path)
    elif len(given) > 1:
        yield Issue("PB103", f"{label} gives both '{given[0]}' and '{given[1]}'; a condition is exactly one of type, "
                             "all, any and not: list both under 'all'", path + (given[1],), on_key=True)
    elif condition.type is not None:
        if condition.type not in _TESTS:
            known = sorted(_TESTS)
            hint = did_you_mean(condition.type, known) or f"; use one of: {', '.join(known)}"
            yield Issue("PB104", f"unknown condition type '{condition.type}'{hint}", path + ("type",))
        elif condition.type == "matches" and isinstance(condition.right, str) and "${" not in condition.right \
                and (problem := regex_problem(condition.right)):
            yield Issue("PB104", f"{label}: {problem}", path + ("right",))
    elif condition.not_ is not None:
        yield from condition_issues(condition.not_, path + ("not",), shown_from)
    else:
        word, items = ("all", condition.all_) if condition.all_ is not None else ("any", condition.any_)
        if not items:
            yield Issue("PB104", f"{label} has an empty '{word}'; give it at least one condition", path + (word,))
        for i, item in enumerate(items or ()):
            yield from condition_issues(item, path + (word, i), shown_from)


_REFERENCE = re.compile(r"\$\{[^}]*\}")
_COMPARES = re.compile(r"==|!=|<=|>=|\s[<>]\s|\s(?:and|or|is|in|not in)\s|^\s*not\s")
_EQUALITY = re.compile(r"^\s*([^=!<>]+?)\s*(==|!=)\s*([^=!<>]+?)\s*$")


def _suggestion(text: str) -> str:
    """`env == 'production'` -> `: {type: equals, left: "${env}", right: production}`; and/or/not: the combinators."""
    match = _EQUALITY.match(text)
    if match is None or _COMPARES.search(match.group(1)) or _COMPARES.search(match.group(3)):
        return " with type, left and right, combined by all, any and not"
    left, right = match.group(1), match.group(3).strip("'\"")
    left = left if "${" in left or not re.fullmatch(r"[A-Za-z_][\w.]*", left) else f"${{{left}}}"
    kind = "equals" if match.group(2) == "==" else "not_equals"
    return f': {{type: {kind}, left: "{left}", right: {right}}}'


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return value
    if isinstance(value, int):   # a step's JSON output may hold any integer; beyond a float's range it is infinite
        return float(value) if abs(value) < 2**1023 else math.inf if value > 0 else -math.inf
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
    raise BadCondition(f"cannot order {short(left)} and {short(right)}: compare numbers or strings")


def _contains(left: Any, right: Any) -> bool:
    if isinstance(left, str):
        return str(right) in left
    if isinstance(left, (list, tuple)):
        return any(_equal(item, right) for item in left)
    if isinstance(left, dict):   # its keys: a list or a mapping is none of them (and no key of a dict)
        return isinstance(right, Hashable) and right in left
    return False


def _matches(left: Any, right: Any) -> bool:
    try:
        return searches(str(right), str(left))
    except BadRegex as err:   # from `${...}`: validation could not see it
        raise BadCondition(str(err)) from None


def _in(left: Any, right: Any) -> bool:
    if isinstance(right, (list, tuple)):
        return any(_equal(left, item) for item in right)
    if isinstance(right, str):
        return str(left) in right
    raise BadCondition(f"'in' needs a list or a string on the right, got {short(right)}")


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
