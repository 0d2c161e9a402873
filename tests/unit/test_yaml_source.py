"""YAML with locations: every key, value and item can be pointed at; bad YAML says where."""
from __future__ import annotations

import pytest

from services.playbook.yaml_source import Location, YamlSyntaxError, load_yaml

TEXT = """\
name: demo
steps:
  - id: build
    depends_on: [a, b]
  - {id: deploy, args: {n: 1}}
"""


def test_data_is_what_the_safe_loader_gives():
    assert load_yaml(TEXT).data == {"name": "demo", "steps": [{"id": "build", "depends_on": ["a", "b"]},
                                                              {"id": "deploy", "args": {"n": 1}}]}


@pytest.mark.parametrize(("path", "key", "location"), [
    (("name",), False, Location(1, 7)),
    (("name",), True, Location(1, 1)),
    (("steps", 0), False, Location(3, 5)),
    (("steps", 0, "depends_on"), True, Location(4, 5)),
    (("steps", 0, "depends_on", 1), False, Location(4, 21)),
    (("steps", 1, "args", "n"), False, Location(5, 28)),
    (("steps", 1, "args", "n"), True, Location(5, 25)),
    (("steps", 1, "timeout_seconds"), False, Location(5, 5)),  # not written: its step
    (("steps", 7), False, Location(3, 3)),  # not written: the steps list
])
def test_every_key_value_and_item_has_a_one_based_location(path, key, location):
    assert load_yaml(TEXT).locate(path, key=key) == location


def test_a_duplicate_key_is_recorded_with_both_places():
    doc = load_yaml("a: 1\nb:\n  c: 1\n  c: 2\n")
    assert doc.data == {"a": 1, "b": {"c": 2}}
    [duplicate] = doc.duplicates
    assert duplicate.path == ("b", "c") and duplicate.first == Location(3, 3) and duplicate.again == Location(4, 3)


def test_a_merge_key_override_is_not_a_duplicate():
    doc = load_yaml("base: &base {a: 1, b: 2}\nuse:\n  <<: *base\n  b: 3\n")
    assert doc.data["use"] == {"a": 1, "b": 3} and doc.duplicates == []


@pytest.mark.parametrize(("text", "location", "words"), [
    ("a: 1\n  b: 2\n", Location(2, 4), "mapping values are not allowed"),
    ("a: [1, 2\n", Location(2, 1), "expected ',' or ']'"),
    ("a: !!python/object:os.system x\n", Location(1, 4), "could not determine a constructor"),
    ("a: !custom {b: 1}\n", Location(1, 4), "tag '!custom' is not allowed"),
    ("a: &x [*x]\n", Location(1, 4), "refers to the collection that contains it"),
    ("? [a, b]\n: 1\n", Location(1, 3), "mapping key must be a plain value"),
    ("a: 1\n---\nb: 2\n", Location(2, 1), "single document"),
    ("a: \x07\n", Location(1, 4), "not allowed in YAML"),
    ("a: !!int many\n", Location(1, 4), "'many' is not a valid !!int"),
    ("!!set a: 1\n", Location(1, 1), "expected a mapping node"),
    ("a: " + "[" * 101 + "]" * 101, Location(1, 104), "nested more than 100 levels"),
])
def test_bad_yaml_says_where(text, location, words):
    with pytest.raises(YamlSyntaxError) as raised:
        load_yaml(text)
    assert raised.value.location == location and words in raised.value.message


def test_an_alias_bomb_is_refused_not_expanded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    with pytest.raises(YamlSyntaxError, match="expands to more than"):
        load_yaml("\n".join(lines))


def test_shared_aliases_stay_cheap_and_point_at_their_anchor():
    doc = load_yaml("a: &x {k: v}\nb: *x\n")
    assert doc.data == {"a": {"k": "v"}, "b": {"k": "v"}}
    assert doc.locate(("b", "k")) == Location(1, 4)


def test_an_empty_text_is_no_data():
    assert load_yaml("").data is None
    assert load_yaml("# only a comment\n").data is None


def test_a_lone_surrogate_is_a_character_yaml_does_not_allow_not_an_internal_error():
    """Text from a JSON door may hold `\\ud800`: validation answered PB000 ('please report it')."""
    from services.playbook import validate_playbook
    [found] = validate_playbook("name: t\nsteps:\n  - {id: a, name: \"x\ud800\", action: noop}\n", "s.yaml")
    assert (found.code, found.line, found.column) == ("PB001", 3, 21), found
    assert "'\\ud800' is not allowed" in found.message
