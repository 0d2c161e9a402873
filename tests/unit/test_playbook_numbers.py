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


@pytest.mark.parametrize("written", ["0x" + "f" * 5000, "9" * 400, "-" + "9" * 30])
@pytest.mark.parametrize("key", ["retry: {max_attempts: N}", "args: {outputs: {n: N}}", "timeout_seconds: N"])
def test_an_integer_beyond_64_bits_is_refused_where_it_is_written(written, key):
    """Such an integer passed YAML, then `float()` of it raised inside validation (PB000, 'please report it')."""
    [(code, line, message)] = errors(f"""
        name: numbers
        steps:
          - {{id: deploy, name: Deploy, action: noop, {key.replace("N", written)}}}
        """)
    assert (code, line) == ("PB001", 3) and "integer" in message and "64 bits" in message, message


def test_a_typed_parameters_integer_beyond_64_bits_is_refused_before_a_run():
    """Given with -p, it validated, then comparing it in a `when` made the start an internal error."""
    found = [(d.code, d.message) for d in validate_playbook(textwrap.dedent("""
        name: numbers
        parameters: [{name: n, type: integer}, {name: x, type: number}, {name: m, type: integer}]
        steps:
          - {id: deploy, name: Deploy, action: noop, when: {type: greater_than, left: "${n}", right: 1}}
        """), "n.yaml", parameters={"n": "9" * 400, "x": 10 ** 400, "m": "9" * 5000}) if d.severity == "error"]
    assert [code for code, _ in found] == ["PB302", "PB302", "PB302"], found
