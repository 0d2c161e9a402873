"""Numbers and names of the right type that no run could honour are found by validation, at their line,
instead of failing every run ("timed out after -5s") or quietly doing less than written."""
from __future__ import annotations

from typing import Any

import pytest

from services.playbook import validate_playbook
from tests.helpers import noop, playbook_yaml


def errors(text: str) -> list[tuple[str, str | None, int | None, str]]:
    return [(d.code, d.field, d.line, d.message) for d in validate_playbook(text, "bounds.yaml")
            if d.severity == "error"]


@pytest.mark.parametrize("extra, field, words", [
    ({"timeout_seconds": -5}, "steps[0].timeout_seconds", "greater than 0, got -5"),
    ({"timeout_seconds": 0}, "steps[0].timeout_seconds", "greater than 0, got 0"),
    ({"timeout_seconds": float("inf")}, "steps[0].timeout_seconds", "greater than 0, got inf"),
    ({"rollback": [{"action": "noop", "timeout_seconds": -1}]}, "steps[0].rollback[0].timeout_seconds", "got -1"),
    ({"retry": {"max_attempts": 0}}, "steps[0].retry.max_attempts", "1 or more, got 0"),
    ({"retry": {"max_attempts": 3, "base_delay": -1}}, "steps[0].retry.base_delay", "0 seconds or more, got -1"),
    ({"retry": {"max_attempts": 3, "max_delay": -2}}, "steps[0].retry.max_delay", "0 seconds or more"),
    ({"retry": {"max_attempts": 3, "retry_on_errors": ["network", "netwrok"]}}, "steps[0].retry.retry_on_errors[1]",
     "'netwrok' is not a failure category; use one of: network, timeout"),
    ({"retry": {"max_attempts": 3, "retry_on_status": [503, 5030]}}, "steps[0].retry.retry_on_status[1]",
     "from 100 to 599, got 5030"),
    ({"approval_gate": {"timeout_seconds": 0}}, "steps[0].approval_gate.timeout_seconds", "greater than 0"),
    ({"approval_gate": {"min_approvals": 0}}, "steps[0].approval_gate.min_approvals", "1 or more, got 0"),
    ({"approval_gate": {"required_approvers": ["dba"], "min_approvals": 3}}, "steps[0].approval_gate.min_approvals",
     "'min_approvals' is 3, but required_approvers names 1; each entry is satisfied by one person"),
    ({"validators": [{"type": "port_open", "port": 70000}]}, "steps[0].validators[0].port", "from 1 to 65535"),
    ({"validators": [{"type": "http_status", "url": "https://x", "expected_status": [200, 999]}]},
     "steps[0].validators[0].expected_status[1]", "from 100 to 599, got 999"),
    ({"validators": [{"type": "disk_space", "min_free_percent": 150}]}, "steps[0].validators[0].min_free_percent",
     "from 0 to 100, got 150"),
    ({"validators": [{"type": "command_succeeds", "command": "true", "timeout_seconds": -1}]},
     "steps[0].validators[0].timeout_seconds", "greater than 0"),
    # 3,171 years: past Go's duration, the NATS timer fired at once and the retry did not wait at all
    ({"retry": {"max_attempts": 2, "base_delay": 99999999999, "max_delay": 1}}, "steps[0].retry.base_delay",
     "at most 31622400 seconds (366 days), got 1e+11"),
    ({"retry": {"max_attempts": 2, "max_delay": float("inf")}}, "steps[0].retry.max_delay", "got inf"),
    ({"approval_gate": {"timeout_seconds": 4e7}}, "steps[0].approval_gate.timeout_seconds", "at most 31622400"),
    ({"approval_gate": {"timeout_seconds": float("nan")}}, "steps[0].approval_gate.timeout_seconds", "got nan"),
    ({"circuit": {"open_seconds": float("inf")}}, "steps[0].circuit.open_seconds", "greater than 0, got inf"),
])
def test_a_bound_no_run_could_honour_is_an_error_at_its_key(extra: dict[str, Any], field: str, words: str) -> None:
    (found,) = errors(playbook_yaml([noop("migrate", name="Migrate", **extra)]))
    code, where, line, message = found
    assert (code, where) == ("PB104", field) and words in message and line is not None


def test_an_error_handler_that_could_never_match_is_an_error() -> None:
    handlers = [{"category": "temprary", "pattern": "lock (held", "run": {"action": "noop"}}]
    found = errors(playbook_yaml([noop("migrate", name="Migrate")], error_handlers=handlers))
    assert [(code, field) for code, field, _, _ in found] == [
        ("PB104", "error_handlers[0].category"), ("PB104", "error_handlers[0].pattern")]
    assert "did you mean 'temporary'?" in found[0][3] and "not a regular expression" in found[1][3]


def test_bounds_a_run_can_honour_pass() -> None:
    step = noop("migrate", name="Migrate", timeout_seconds=366 * 24 * 3600,
                retry={"max_attempts": 1, "base_delay": 0, "max_delay": 366 * 24 * 3600,
                       "retry_on_errors": ["interrupted"], "retry_on_status": [429]},
                approval_gate={"required_approvers": ["dba", "dba"], "min_approvals": 2, "timeout_seconds": 60},
                validators=[{"type": "port_open", "port": 5432}, {"type": "disk_space", "min_free_percent": 10}])
    handlers = [{"category": "timeout", "pattern": "lock (held|taken)", "run": {"action": "noop"}}]
    assert errors(playbook_yaml([step], error_handlers=handlers)) == []


@pytest.mark.parametrize(("check", "words"), [
    ({"type": "disk_space", "path": "/"}, "give 'min_free_gb' or 'min_free_percent' (or both)"),
    ({"type": "command_succeeds"}, "give exactly one of 'command' and 'argv'"),
    ({"type": "command_succeeds", "command": "true", "argv": ["true"]}, "give exactly one of 'command' and 'argv'"),
])
def test_a_validator_missing_what_it_checks_is_refused_before_the_run(check: dict[str, Any], words: str) -> None:
    """The language says so; validation let it through and the step failed when it ran, in these words."""
    (found,) = errors(playbook_yaml([noop("migrate", name="Migrate", validators=[check])]))
    assert found[:2] == ("PB102", "steps[0].validators[0]") and words in found[3], found
