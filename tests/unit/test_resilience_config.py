"""Error patterns and error handlers from the engine's settings."""
from __future__ import annotations

import pytest

from services.errors import PlaybookError
from services.domain.classify import classify
from services.settings import Settings


def test_configured_patterns_are_read_and_win_over_the_built_in_table(tmp_path) -> None:
    path = tmp_path / "patterns.yaml"
    path.write_text("- {regex: 'connection refused by legacy-db', category: temporary}\n")
    patterns = Settings.from_environ({"PLAYBOOK_ERROR_PATTERNS": str(path)}).error_patterns
    found = classify("psql: connection refused by legacy-db", {}, "", patterns)
    assert (found.category, found.pattern) == ("temporary", "connection refused by legacy-db")


def test_no_configuration_means_no_patterns_and_a_bad_file_says_which() -> None:
    assert Settings.from_environ({}).error_patterns == []
    with pytest.raises(PlaybookError, match=r"nope.yaml \(\$PLAYBOOK_ERROR_PATTERNS\): cannot read the error patterns"):
        Settings.from_environ({"PLAYBOOK_ERROR_PATTERNS": "/nope.yaml"}).error_patterns  # noqa: B018 - reading it reads the file


def test_configured_handlers_are_read_as_in_a_playbook(tmp_path) -> None:
    path = tmp_path / "handlers.yaml"
    path.write_text("- category: authentication\n  run: {action: shell, args: {argv: [refresh-token]}}\n"
                    "- pattern: 'lock held'\n  then: fail\n  run: {action: noop}\n")
    first, second = Settings.from_environ({"PLAYBOOK_ERROR_HANDLERS": str(path)}).error_handlers
    assert (first.category, first.run.action, first.then) == ("authentication", "shell", "retry")
    assert (second.pattern, second.then) == ("lock held", "fail")


def test_a_handler_with_an_unknown_key_stops_the_service_naming_file_and_key(tmp_path) -> None:
    path = tmp_path / "handlers.yaml"
    path.write_text("- category: authentication\n  rnu: {action: noop}\n")
    with pytest.raises(PlaybookError, match=r"handlers.yaml \(\$PLAYBOOK_ERROR_HANDLERS\).*rnu"):
        Settings.from_environ({"PLAYBOOK_ERROR_HANDLERS": str(path)}).error_handlers  # noqa: B018 - reading it reads the file


def test_a_handler_whose_pattern_re2_cannot_run_stops_the_service_naming_file_and_why(tmp_path) -> None:
    """Engine handlers are matched by RE2, as a playbook's are: a lookahead would never match, silently."""
    path = tmp_path / "handlers.yaml"
    path.write_text("- pattern: 'lock(?! released)'\n  run: {action: noop}\n")
    with pytest.raises(PlaybookError, match=r"handlers.yaml \(\$PLAYBOOK_ERROR_HANDLERS\): pattern .*lookahead"):
        Settings.from_environ({"PLAYBOOK_ERROR_HANDLERS": str(path)}).error_handlers  # noqa: B018 - reading it reads the file
