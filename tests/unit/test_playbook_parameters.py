"""A run's parameters: defaults, then the environment, then the caller — typed and checked."""
from __future__ import annotations

import pytest

from events.playbook import Parameter, Playbook, Step
from services.playbook import PlaybookInvalid, resolve_parameters
from services.playbook.parameters import check_parameters


def playbook(*parameters: Parameter, environments: dict | None = None) -> Playbook:
    return Playbook(name="p", steps=[Step(id="a", action="noop")], parameters=list(parameters),
                    environments=environments or {})


WEB = playbook(
    Parameter(name="region", default="eu", choices=["eu", "us"]),
    Parameter(name="replicas", type="integer", default=1),
    Parameter(name="environment"),
    environments={"prod": {"region": "us", "replicas": 3}, "dev": {}},
)


def test_defaults_then_environment_then_caller():
    assert resolve_parameters(WEB) == {"region": "eu", "replicas": 1}
    assert resolve_parameters(WEB, environment="prod") == {"region": "us", "replicas": 3, "environment": "prod"}
    assert resolve_parameters(WEB, environment="prod", given={"replicas": "5"})["replicas"] == 5


def test_the_environment_parameter_follows_the_chosen_environment_unless_given():
    assert resolve_parameters(WEB, environment="dev")["environment"] == "dev"
    assert resolve_parameters(WEB, environment="dev", given={"environment": "dev-2"})["environment"] == "dev-2"


@pytest.mark.parametrize(("kind", "given", "value"), [
    ("integer", "42", 42), ("integer", " -3 ", -3), ("integer", 7, 7),
    ("number", "1.5", 1.5), ("number", "2", 2), ("number", 3, 3),
    ("boolean", "yes", True), ("boolean", "No", False), ("boolean", "1", True), ("boolean", "false", False),
    ("boolean", True, True),
    ("list", "[a, b]", ["a", "b"]), ("list", '["x"]', ["x"]), ("list", [1], [1]),
    ("object", "{a: 1}", {"a": 1}), ("object", '{"a": [1]}', {"a": [1]}),
    ("string", "text", "text"), (None, "anything", "anything"), (None, 3, 3),
])
def test_values_are_coerced_to_the_declared_type(kind, given, value):
    assert resolve_parameters(playbook(Parameter(name="p", type=kind)), given={"p": given}) == {"p": value}


BOMB = "[&a0 [" + ", ".join(["x"] * 10) + "], " + ", ".join(
    f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)) + "]"


@pytest.mark.parametrize(("kind", "given"), [
    ("integer", "4.5"), ("integer", "many"), ("integer", "+-1"), ("integer", "²"), ("integer", True), ("integer", 1.5),
    ("number", "ten"), ("number", "nan"), ("number", False),
    ("boolean", "maybe"), ("boolean", 1),
    ("list", "{a: 1}"), ("list", "[unclosed"), ("list", BOMB), ("object", "[1]"), ("object", 3),
    ("string", 5),
])
def test_a_value_of_the_wrong_type_is_an_error_naming_the_parameter(kind, given):
    with pytest.raises(PlaybookInvalid, match="parameter 'p' must be") as raised:
        resolve_parameters(playbook(Parameter(name="p", type=kind)), given={"p": given})
    assert [d.code for d in raised.value.diagnostics] == ["PB302"]


def test_a_value_outside_the_choices_is_an_error_with_a_suggestion():
    with pytest.raises(PlaybookInvalid, match="not one of its choices") as raised:
        resolve_parameters(WEB, given={"region": "uss"})
    assert "did you mean 'us'?" in raised.value.diagnostics[0].message


def test_a_required_parameter_without_value_is_missing_only_when_values_are_given():
    required = playbook(Parameter(name="version", required=True))
    [to_give] = check_parameters(required)[1]        # no caller yet: what a run must give, an info
    assert (to_give.code, to_give.path) == ("PB505", ("parameters", 0))
    assert "a run must give it with -p version=<value>" in to_give.message
    _, issues = check_parameters(required, given={})
    assert [(i.code, i.path) for i in issues] == [("PB301", ("parameters", 0))]
    assert "-p version=<value>" in issues[0].message


def test_an_unknown_environment_lists_the_known_ones():
    with pytest.raises(PlaybookInvalid,
                       match=r"unknown environment 'prd' — did you mean 'prod'\? \(known: prod, dev\)"):
        resolve_parameters(WEB, environment="prd")


def test_an_undeclared_parameter_is_refused_with_a_suggestion():
    with pytest.raises(PlaybookInvalid, match="'regoin' was given .* did you mean 'region'"):
        resolve_parameters(WEB, given={"regoin": "us"})


def test_bad_values_in_any_environment_are_found_without_choosing_it():
    bad = playbook(Parameter(name="replicas", type="integer"), environments={"prod": {"replicas": "x", "zone": 1}})
    _, issues = check_parameters(bad)   # zone is the environment's own variable, not a parameter
    assert [(i.code, i.path) for i in issues] == [("PB302", ("environments", "prod", "replicas"))]


def test_a_parameter_declared_twice_is_an_error():
    _, issues = check_parameters(playbook(Parameter(name="a"), Parameter(name="a")))
    assert [(i.code, i.path) for i in issues] == [("PB306", ("parameters", 1, "name"))]
