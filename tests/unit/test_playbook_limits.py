"""What the engine refuses to read, and how it says so: too large (PB004) or too deep (PB001), never a crash."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.big import playbook_text
from services.playbook import MAX_BYTES, MAX_STEPS, PlaybookInvalid, load_playbook, validate_playbook
from services.playbook import yaml_events


def only(diagnostics):
    [diagnostic] = diagnostics
    return diagnostic


def test_a_text_larger_than_the_limit_is_refused_before_it_is_parsed():
    text = "name: big\nsteps: [" + "{id: a, action: noop}, " * (MAX_BYTES // 20) + "]\n"
    found = only(validate_playbook(text, "big.yaml"))
    assert (found.code, found.severity, found.line) == ("PB004", "error", None)
    assert "32.0 MiB one playbook may be" in found.message and "split it" in found.message


def test_a_text_one_byte_over_the_limit_is_told_in_bytes_not_as_the_limit_itself():
    text = "name: big\n#" + "x" * (MAX_BYTES - 11) + "\n"
    assert len(text.encode()) == MAX_BYTES + 1
    found = only(validate_playbook(text, "big.yaml"))
    assert f"the playbook is {MAX_BYTES + 1:,} bytes, more than the {MAX_BYTES:,} bytes" in found.message
    with pytest.raises(PlaybookInvalid):
        load_playbook(text, "big.yaml")


def test_bytes_are_counted_as_utf8_not_as_characters():
    text = "name: big\nsteps: []\ndescription: '" + "é" * (MAX_BYTES // 2 + 1) + "'\n"
    assert len(text) < MAX_BYTES
    assert only(validate_playbook(text)).code == "PB004"


def test_one_step_more_than_the_limit_stops_the_reading_at_that_step():
    text = "name: big\nsteps: [" + "s, " * MAX_STEPS + "last]\n"
    found = only(validate_playbook(text, "big.yaml"))
    assert (found.code, found.line, found.column) == ("PB004", 2, len("steps: [") + 3 * MAX_STEPS + 1)
    assert f"more than {MAX_STEPS} steps" in found.message


def test_any_other_list_is_held_to_the_same_length():
    text = "name: big\nsteps: [{id: a, action: noop}]\nvariables:\n  hosts: [" + "h, " * (MAX_STEPS + 1) + "]\n"
    found = only(validate_playbook(text))
    assert found.code == "PB004" and "variables.hosts" in found.message


def test_more_values_than_the_yaml_limit_is_refused_as_too_large(monkeypatch):
    monkeypatch.setattr(yaml_events, "MAX_VALUES", 50)
    found = only(validate_playbook("name: x\nsteps: []\nvariables: {a: [" + "1, " * 60 + "]}\n"))
    assert found.code == "PB004" and "more than 50 values" in found.message


@pytest.mark.parametrize(("text", "words"), [
    ("name: x\nsteps: []\nvariables: {a: " + "[" * 150 + "]" * 150 + "}\n", "nested more than 100 levels"),
    ("name: x\nsteps: []\nvariables: {a: " + "[" * 5_000 + "]" * 5_000 + "}\n", "maximum nesting depth"),
    ("".join(f"{'  ' * i}k{i}:\n" for i in range(2_000)), "maximum nesting depth"),
    ("a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 150)), "nested more than 100 levels"),
])
def test_a_deeply_nested_document_gets_a_clear_diagnostic(text, words):
    found = only(validate_playbook(text, "deep.yaml"))
    assert found.code == "PB001" and words in found.message and found.line is not None


def test_an_alias_bomb_is_still_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    found = only(validate_playbook("\n".join(lines) + "\n"))
    assert found.code == "PB001" and "through aliases" in found.message


def test_aliases_may_repeat_as_much_as_the_text_writes():
    text = playbook_text(3_000, shell=False).replace(
        "variables:\n", "variables:\n  defaults: &defaults {timeout_seconds: 30, retry: {max_attempts: 2}}\n")
    text = text.replace("    name: noop step", "    <<: *defaults\n    name: noop step")
    loaded = load_playbook(text)
    assert loaded.playbook.steps[9].retry.max_attempts == 2 and loaded.playbook.steps[9].timeout_seconds == 30


def test_loading_from_many_threads_at_once_gives_what_loading_one_by_one_gives():
    texts = [playbook_text(300, seed=seed) for seed in range(4)] + ["name: x\nsteps:\n  - {id: a, action: shel}\n"]

    def load(text):
        try:
            return load_playbook(text, "t.yaml")
        except PlaybookInvalid as err:
            return err.diagnostics

    one_by_one = [load(text) for text in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        at_once = list(pool.map(load, texts * 3))
    assert at_once == one_by_one * 3


def test_a_playbook_misspelling_in_every_step_gets_every_error_and_hints_for_the_first():
    lines = ["name: typos", "steps:"]
    for i in range(2_000):
        lines += [f"  - {{id: step_{i}, name: n, action: noop, depends_on: [stp_{i}], args: {{x: '${{nme}}'}}}}"]
    diagnostics = validate_playbook("\n".join(lines) + "\n")
    unknown = [d for d in diagnostics if d.code == "PB203"]
    assert len(unknown) == 2_000 and len([d for d in diagnostics if d.code == "PB207"]) == 2_000
    assert "did you mean 'step_0'?" in unknown[0].message    # one edit away, found without comparing 2,000 ids
    assert "did you mean" not in unknown[-1].message


def test_many_dependency_cycles_are_named_up_to_a_bound():
    lines = ["name: cycles", "steps:"] + [f"  - {{id: s{i}, name: n, action: noop, depends_on: [s{i + 1}, s0]}}"
                                          for i in range(3_000)] + ["  - {id: s3000, name: n, action: noop}"]
    cycles = [d for d in validate_playbook("\n".join(lines) + "\n") if d.code == "PB204"]
    assert len(cycles) == 100 and all(len(d.message) < 1_000 for d in cycles)
