"""Numbers a run can keep: an infinite or NaN value, or a wait no clock can count, is refused where it is written,
before a run stores it (stored, `.inf` came back as null and the run could no longer be read by anyone)."""
from __future__ import annotations

import textwrap

import msgspec
import pytest

from events.playbook import Playbook
from services.playbook import validate_playbook
from services.playbook.numbers import MAX_WAIT_SECONDS


def refused(step: str) -> list[tuple[str, int, str]]:
    text = "name: waits\nsteps:\n  - id: deploy\n    name: Deploy\n    action: noop\n" + textwrap.indent(
        textwrap.dedent(step).strip("\n"), "    ") + "\n"
    return [(d.code, d.line, d.message) for d in validate_playbook(text, "waits.yaml") if d.severity == "error"]


def test_a_playbook_with_infinity_would_be_stored_as_null_and_never_read_again():
    stored = msgspec.json.encode(msgspec.convert(
        {"name": "p", "steps": [{"id": "a", "action": "noop", "retry": {"base_delay": float("inf")}}]}, Playbook))
    with pytest.raises(msgspec.ValidationError, match="got `null`"):
        msgspec.json.decode(stored, type=Playbook)


@pytest.mark.parametrize("written", [".inf", "-.inf", ".nan"])
def test_an_endless_or_nan_wait_is_refused_where_it_is_written(written):
    assert refused(f"retry: {{max_attempts: 3, base_delay: {written}}}") == [
        ("PB104", 6, f"'retry.base_delay' is {float(written.replace('.', '')):g}; it must be a finite number "
                     "(JSON, where runs are kept, has no infinity or NaN)")]


def test_any_number_a_run_keeps_must_be_finite_not_only_waits():
    assert [line for _, line, _ in refused("""
        validators: [{type: memory_usage, max_used_percent: .nan}]
        args: {message: x, outputs: {ratio: .inf}}
        """)] == [6, 7]


@pytest.mark.parametrize("written, message", [
    ("timeout_seconds: 0", "'timeout_seconds' is 0; it must be more than 0 and at most 31622400 seconds (366 days) "
                           "(leave it out for no limit)"),
    ("timeout_seconds: -5", "'timeout_seconds' is -5; it must be more than 0 and at most 31622400 seconds (366 days)"),
    ("approval_gate: {timeout_seconds: 0}", "'approval_gate.timeout_seconds' is 0; it must be more than 0 and at "
                                            "most 31622400 seconds (366 days) (leave it out for no limit)"),
    ("retry: {max_delay: -1}", "'retry.max_delay' is -1; it must be from 0 to 31622400 seconds (366 days)"),
    # 3,171 years: past Go's duration, a NATS timer this far off fired at once and the retry did not wait at all
    ("retry: {max_attempts: 2, base_delay: 99999999999, max_delay: 99999999999}",
     "'retry.base_delay' is 1e+11; it must be from 0 to 31622400 seconds (366 days)"),
    ("rollback: [{action: noop, timeout_seconds: 40000000}]",
     "'rollback[0].timeout_seconds' is 4e+07; it must be more than 0 and at most 31622400 seconds (366 days)"),
    ("circuit: {open_seconds: 40000000}",
     "'circuit.open_seconds' is 4e+07; it must be more than 0 and at most 31622400 seconds (366 days)"),
])
def test_a_wait_the_engine_cannot_count_is_refused(written, message):
    assert [m for _, _, m in refused(written)][:1] == [message]


def test_waits_up_to_a_year_and_a_day_and_retries_at_once_are_taken():
    assert refused(f"""
        timeout_seconds: {MAX_WAIT_SECONDS}
        approval_gate: {{timeout_seconds: 0.5}}
        retry: {{max_attempts: 3, base_delay: 0, max_delay: {MAX_WAIT_SECONDS}}}
        """) == []
