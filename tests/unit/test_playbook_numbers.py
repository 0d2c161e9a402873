"""Numbers a run can keep: an infinity or a NaN anywhere in a playbook is refused where it is written, before a
run stores it (stored, `.inf` came back as null and the run could no longer be read by anyone)."""
from __future__ import annotations

import textwrap

import msgspec
import pytest

from events.playbook import Playbook
from services.playbook import validate_playbook


def errors(text: str) -> list[tuple[str, int | None, str]]:
    return [(d.code, d.line, d.message) for d in validate_playbook(textwrap.dedent(text).lstrip("\n"), "n.yaml")
            if d.severity == "error"]


def test_a_playbook_with_infinity_would_be_stored_as_null_and_never_read_again():
    stored = msgspec.json.encode(msgspec.convert(
        {"name": "p", "steps": [{"id": "a", "action": "noop", "args": {"outputs": {"ratio": float("inf")}}}]},
        Playbook))
    assert b'"ratio":null' in stored


@pytest.mark.parametrize("written", [".inf", "-.inf", ".nan"])
def test_an_infinity_or_nan_in_a_steps_args_is_refused_at_its_line(written):
    assert errors(f"""
        name: numbers
        steps:
          - id: deploy
            name: Deploy
            action: noop
            args: {{outputs: {{ratio: {written}}}}}
        """) == [("PB104", 6, f"'args.outputs.ratio' is {float(written.replace('.', '')):g}; it must be a finite "
                              "number (JSON, where runs are kept, has no infinity or NaN)")]


def test_variables_defaults_and_the_version_must_be_finite_too():
    assert [(line, message.split(";")[0]) for _, line, message in errors("""
        name: numbers
        version: .nan
        parameters:
          - {name: ratio, default: .inf}
        variables: {limits: [1, .inf]}
        steps:
          - {id: deploy, name: Deploy, action: noop}
        """)] == [(2, "'version' is nan"), (4, "'parameters[0].default' is inf"), (5, "'variables.limits[1]' is inf")]


def test_a_wait_of_infinity_is_told_once_by_its_own_bound():
    assert [message for _, _, message in errors("""
        name: numbers
        steps:
          - {id: deploy, name: Deploy, action: noop, retry: {max_attempts: 2, base_delay: .inf}}
        """)] == ["'base_delay' must be 0 seconds or more, got inf"]


def test_a_typed_parameters_infinite_default_is_told_once_by_its_type():
    assert [message for _, _, message in errors("""
        name: numbers
        parameters:
          - {name: ratio, type: number, default: .inf}
        steps:
          - {id: deploy, name: Deploy, action: noop}
        """)] == ["parameter 'ratio' must be a number, got inf (from its default)"]
