"""Conditions for `when` and `validations`: typed comparisons, clear errors."""
from __future__ import annotations

import pytest

from events.playbook import Condition
from services.playbook.conditions import BadCondition, evaluate
from services.playbook.interpolate import Context

CTX = Context(parameters={"env": "production", "count": 3, "ok": "false", "status": 200, "body": "all healthy"})


@pytest.mark.parametrize("kind, left, right, expected", [
    ("equals", "${env}", "production", True),
    ("equals", "${count}", "3", True),              # numbers compare as numbers
    ("equals", "${count}", 3.0, True),
    ("not_equals", "${env}", "staging", True),
    ("contains", "${body}", "healthy", True),
    ("contains", ["a", "b"], "b", True),
    ("http_status", "${status}", 200, True),
    ("http_status", "${status}", "503", False),
    ("truthy", "${ok}", None, False),                # the string "false" is false
    ("falsy", "", None, True),
    ("greater_than", "${count}", "2.5", True),
    ("less_than", "10", "9", False),                 # not string order
    ("matches", "${body}", r"^all\s+heal", True),
    ("in", "${env}", ["staging", "production"], True),
    ("in", 3, ["1", "2"], False),
])
def test_typed_comparisons(kind, left, right, expected) -> None:
    assert evaluate(Condition(type=kind, left=left, right=right), CTX) is expected


def test_plain_values_and_strings() -> None:
    assert evaluate(None, CTX) and evaluate(True, CTX) and not evaluate(False, CTX)
    assert evaluate("${env}", CTX) and not evaluate("${ok}", CTX)


@pytest.mark.parametrize("condition, problem", [
    (Condition(type="equalz", left=1, right=1), "unknown condition type 'equalz'"),
    (Condition(type="matches", left="x", right="("), "is not a regular expression"),
    (Condition(type="greater_than", left="abc", right=3), "cannot order"),
])
def test_conditions_that_cannot_be_evaluated_say_why(condition, problem) -> None:
    with pytest.raises(BadCondition, match=problem):
        evaluate(condition, CTX)


def test_an_integer_too_large_for_a_float_still_compares() -> None:
    """A step's JSON output may hold any integer: comparing it raised OverflowError inside the engine."""
    huge = 10 ** 400
    assert evaluate(Condition(type="greater_than", left=huge, right=1), Context())
    assert not evaluate(Condition(type="less_than", left=huge, right="1"), Context())
    assert evaluate(Condition(type="less_than", left=-huge, right=1), Context())


@pytest.mark.parametrize("pattern", ["(a+)+$", "^(a|aa)*$", r"(\w+\s?)+$", "(a?)+b", ".*.*x"])
def test_a_regular_expression_that_backtracks_for_hours_in_re_answers_at_once(pattern) -> None:
    """Matched in the run service with `re`, `(a+)+$` on 24 characters froze every service of the process (its
    web server too) for seconds; on 40, for hours. RE2 answers in time linear in the text."""
    assert not evaluate(Condition(type="matches", left="a" * 1_000_000 + "!", right=pattern), Context())


@pytest.mark.parametrize(("left", "right"), [("x", "a{1001}"), ({"a": 1}, None)])
def test_a_condition_the_engine_cannot_evaluate_says_so_instead_of_raising_raw(left, right) -> None:
    """An OverflowError or TypeError out of `when` failed the decision ten times, then left the run running
    for ever (MessageAbandoned)."""
    if right is None:
        assert not evaluate(Condition(type="contains", left=left, right=[1]), Context())
        assert not evaluate(Condition(type="contains", left=left, right={"a": 1}), Context())
    else:
        with pytest.raises(BadCondition, match="not a regular expression"):
            evaluate(Condition(type="matches", left=left, right=right), Context())


def test_a_pattern_from_a_reference_that_re2_cannot_run_is_a_bad_condition_saying_why() -> None:
    """Validation cannot see a pattern that `${...}` brings; the step fails as `configuration` with this."""
    ctx = Context(variables={"pattern": "deploy(?! done)"})
    with pytest.raises(BadCondition, match="no lookahead or lookbehind"):
        evaluate(Condition(type="matches", left="deploy started", right="${pattern}"), ctx)


def test_ordinary_regular_expressions_still_match() -> None:
    for pattern in (r"^v\d+\.\d+$", "ok|healthy", "(ab)+", "(?:a{2})*$", "[a-z][a-z0-9-]*"):
        assert evaluate(Condition(type="matches", left="v1.2" if "v" in pattern else "abab", right=pattern),
                        Context()) or pattern in ("ok|healthy",), pattern
