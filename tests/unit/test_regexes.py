"""Authors' regular expressions run on RE2: linear in the text, and never on Python's backtracking `re`.

`.*x` over 64 KB of step output took 12 s in `re`, `.*.*x` over 4 KB a minute, holding the GIL: every service
of `playbook up` stood still. These finish at once; the assertions are about the answers, and a regression
shows as a test that does not finish.
"""
from __future__ import annotations

import pytest

from events.playbook import ErrorHandler, RollbackAction
from events.run import StepFailed
from services.domain.classify import Classification
from services.domain.retry import matching_handler
from services.playbook.regexes import BadRegex, matches_whole, regex_problem, searches
from tests.helpers import R, at

MEGABYTE = "a" * 1_000_000


@pytest.mark.parametrize(("pattern", "text", "found"), [
    (".*x", MEGABYTE, False), (".*.*x", MEGABYTE, False), ("(.*)*x", MEGABYTE, False),
    ("(.*)*x", MEGABYTE + "x", True), ("(a+)+b", MEGABYTE, False), ("(a+)+$", MEGABYTE + "!", False),
    ("(a|aa)*b", MEGABYTE, False), (r"(\w+\s?)+!", MEGABYTE + " !", True), ("(a*)*(b|c)", MEGABYTE + "c", True),
])
def test_patterns_that_backtrack_for_hours_in_re_answer_over_a_megabyte(pattern, text, found) -> None:
    assert regex_problem(pattern) is None          # no longer refused: nothing to fear from them
    assert searches(pattern, text) is found


def test_search_is_unanchored_as_re_search_and_whole_is_as_re_fullmatch() -> None:
    assert searches("b", "abc") and searches("^a", "abc") and not searches("^b", "abc")
    assert searches("c$", "abc") and searches("(?m)^b$", "a\nb\nc") and not searches("^b$", "a\nb\nc")
    assert matches_whole("[a-z][a-z0-9-]*", "web-01") and not matches_whole("[a-z]+", "web-01")
    assert not matches_whole("b", "abc") and matches_whole("a|ab", "ab")   # the whole text, not the first branch
    assert searches("", "") and matches_whole("", "") and not matches_whole("x", "")


def test_case_is_ignored_when_asked_in_any_script_and_unicode_is_characters() -> None:
    assert searches("DEPLOY LOCK", "error: deploy lock is held", ignore_case=True)
    assert not searches("DEPLOY LOCK", "error: deploy lock is held")
    assert searches("échec", "ÉCHEC de la connexion", ignore_case=True)
    assert searches("(?i)échec", "ÉCHEC")
    assert matches_whole("..", "日本") and matches_whole(r"\x{65e5}本", "日本")
    assert searches("x", "\ud800x")                  # a lone surrogate (from JSON) is no UnicodeEncodeError


@pytest.mark.parametrize(("pattern", "words"), [
    (r"(a)\1", "no backreferences"),
    ("(?P<w>a)(?P=w)", "no backreferences"),
    ("deploy(?! done)", "no lookahead or lookbehind"),
    ("(?<=id=)[0-9]+", "no lookahead or lookbehind"),
    ("(?>a+)b", "no atomic groups"),
    ("a*+b", "no possessive repeats"),
    (r"done\Z", r"`\z`"),
    (r"caf\u00e9", r"`\x{e9}`"),
    ("(?x) a b", "no verbose mode"),
    ("a{1001}", "at most 1000 times"),
    ("(", "missing )"),
])
def test_what_re2_cannot_run_is_refused_by_name_never_run_by_re_instead(pattern, words) -> None:
    """Some RE2 wrappers fall back to `re` for syntax RE2 lacks; this one must not, so backtracking never
    returns through an author's pattern."""
    problem = regex_problem(pattern)
    assert problem is not None and "is not a regular expression the engine can run" in problem and words in problem
    with pytest.raises(BadRegex, match="the engine can run"):
        searches(pattern, "aaab")
    with pytest.raises(BadRegex):
        matches_whole(pattern, "aaab")


def failed(error: str, **outputs: str) -> StepFailed:
    return StepFailed(run_id=R, at=at(0), step_id="s", attempt=1, error=error, outputs=outputs)


def test_an_error_handler_pattern_is_searched_case_insensitively_over_error_stderr_and_stdout() -> None:
    found = Classification(category="unknown", signal="text")
    handlers = [ErrorHandler(run=RollbackAction(action="noop"), pattern="(?<!no )lock held"),   # RE2 cannot: skipped
                ErrorHandler(run=RollbackAction(action="noop"), pattern="DEPLOY LOCK.*HELD")]
    assert matching_handler(handlers, found, failed("exit 1", stderr="Deploy lock is held by ci")) == 1
    assert matching_handler(handlers, found, failed("exit 1", stdout=MEGABYTE)) is None
    assert matching_handler(handlers[1:], found, failed("exit 1", stdout=MEGABYTE + " deploy lock held")) == 0
