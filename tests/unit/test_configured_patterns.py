"""Error patterns from the engine's configuration."""
from __future__ import annotations

import pytest

from services.errors import PlaybookError
from services.resilience.classify import classify
from services.resilience.service import configured_patterns


def test_configured_patterns_are_read_and_win_over_the_built_in_table(tmp_path) -> None:
    path = tmp_path / "patterns.yaml"
    path.write_text("- {regex: 'connection refused by legacy-db', category: temporary}\n")
    patterns = configured_patterns({"PLAYBOOK_ERROR_PATTERNS": str(path)})
    found = classify("psql: connection refused by legacy-db", {}, "", patterns)
    assert (found.category, found.pattern) == ("temporary", "connection refused by legacy-db")


def test_no_configuration_means_no_patterns_and_a_bad_file_says_which() -> None:
    assert configured_patterns({}) == []
    with pytest.raises(PlaybookError, match="nope.yaml: cannot read the error patterns"):
        configured_patterns({"PLAYBOOK_ERROR_PATTERNS": "/nope.yaml"})
