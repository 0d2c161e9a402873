"""The language an operator already knows: `when` lists and all/any/not, environments with variables of
their own, and other tools' spellings read as ours or answered with what to write."""
from __future__ import annotations

from typing import Any

import pytest
import yaml

from events.playbook import Condition
from services.playbook import PlaybookInvalid, load_playbook, validate_playbook
from services.playbook.conditions import evaluate
from services.playbook.interpolate import Context
from tests.helpers import R, Scenario, kinds, noop, playbook_yaml, started


def findings(text: str, **kw: Any) -> list[tuple[str, str | None, str]]:
    return [(d.code, d.field, d.message) for d in validate_playbook(text, "habits.yaml", **kw)
            if d.code not in ("PB501",)]


# -- when: a list that all hold, and all / any / not ---------------------------------------------

CTX = Context(parameters={"env": "production", "replicas": 3, "region": "eu"})
DECLARED = [{"name": name} for name in CTX.parameters]
PROD = {"type": "equals", "left": "${env}", "right": "production"}
MANY = {"type": "greater_than", "left": "${replicas}", "right": 2}
US = {"type": "equals", "left": "${region}", "right": "us"}


@pytest.mark.parametrize("when, holds", [
    ([PROD, MANY], True),                                   # Ansible's list: every item must hold
    ([PROD, US], False),
    ({"all": [PROD, MANY]}, True),
    ({"any": [US, MANY]}, True),
    ({"any": [US, {"not": PROD}]}, False),
    ({"not": US}, True),
    ({"all": [PROD, {"any": [US, {"not": {"all": [MANY, US]}}]}]}, True),    # nested
    (["${env}", {"not": False}], True),
])
def test_a_when_list_needs_every_item_and_all_any_not_combine_as_written(when: Any, holds: bool) -> None:
    loaded = load_playbook(playbook_yaml([noop("a", when=when)], parameters=DECLARED))
    assert evaluate(loaded.playbook.steps[0].when, CTX) is holds


def test_a_step_whose_when_list_has_a_false_item_is_skipped() -> None:
    s = Scenario(started(R, [noop("deploy"), noop("announce", when=["${notify}", PROD])],
                         parameters=[{"name": "notify", "type": "boolean", "default": True},
                                     {"name": "env", "default": "staging"}]))
    s.start()
    assert kinds(s.run_step("deploy")) == ["StepSucceeded:deploy", "StepSkipped:announce", "RunCompleted"]


@pytest.mark.parametrize("when, code, words", [
    ({"left": "${env}", "right": "x"}, "PB102", "'when' is missing the required key 'type' (a comparison), or 'all'"),
    ({"type": "equals", "all": [PROD]}, "PB103", "'when' gives both 'type' and 'all'"),
    ({"type": "equal", "left": 1, "right": 1}, "PB104", "unknown condition type 'equal' — did you mean 'equals'?"),
    ({"any": []}, "PB104", "'when' has an empty 'any'"),
    ([PROD, {"not": {"type": "greater"}}], "PB104", "unknown condition type 'greater'"),
    ("${env} == 'production'", "PB106", "write a condition instead: "
                                        '{type: equals, left: "${env}", right: production}'),
    (["env != staging"], "PB106", '{type: not_equals, left: "${env}", right: staging}'),
    ("ready and approved", "PB106", "combined by all, any and not"),
])
def test_a_condition_written_wrong_is_found_before_the_run(when: Any, code: str, words: str) -> None:
    text = playbook_yaml([noop("a", name="A", when=when)], parameters=[{"name": "env"}])
    (found,) = [(c, m) for c, _, m in findings(text) if c.startswith("PB1")]
    assert found[0] == code and words in found[1]


def test_validations_take_all_any_and_not_too() -> None:
    loaded = load_playbook(playbook_yaml([noop("a", validations=[{"any": [US, {"not": PROD}]}])], parameters=DECLARED))
    assert not evaluate(loaded.playbook.steps[0].validations[0], CTX)
    assert findings(playbook_yaml([noop("a", name="A", validations=[{"any": []}])]))[0][0] == "PB104"


# -- environments with variables of their own ------------------------------------------------------

TIERED = """\
name: tiered
environments:
  staging: {tier: staging, replicas: 1}
  production: {tier: production, replicas: 3}
variables:
  replicas: 1
steps:
  - id: scale
    name: Scale
    action: noop
    args: {outputs: {replicas: "${replicas}"}}
  - id: page_oncall
    name: Page on-call
    action: noop
    when: {type: equals, left: "${tier}", right: production}
"""


def test_an_environment_defines_a_variable_without_declaring_it_anywhere_else() -> None:
    assert findings(TIERED) == [("PB505", "environments", "'tier' is a variable only environments staging, production "
                                                          "set; a run must choose one with --env")]
    assert findings(TIERED, environment="staging") == []
    loaded = load_playbook(TIERED, environment="production", parameters={})
    assert loaded.variables == {"tier": "production", "replicas": 3}     # over the playbook's replicas: 1
    assert loaded.parameters == {}


def test_the_environments_values_decide_the_run() -> None:
    for environment, last in (("production", "StepScheduled:page_oncall"), ("staging", "RunCompleted")):
        loaded = load_playbook(TIERED, environment=environment, parameters={})
        s = Scenario(started(R, yaml.safe_load(TIERED)["steps"], environment=environment,
                             environments=yaml.safe_load(TIERED)["environments"], variables={"replicas": 1}))
        assert s.run.started.variables == loaded.variables
        s.start()
        assert kinds(s.run_step("scale"))[-1] == last         # staging: page_oncall skipped, the run done


def test_a_variable_only_environments_set_needs_an_environment_that_sets_it() -> None:
    with pytest.raises(PlaybookInvalid, match="'tier' is a variable only environments staging, production set; "
                                              "choose one with --env"):
        load_playbook(TIERED, parameters={})
    partial = TIERED.replace("  staging: {tier: staging, replicas: 1}", "  staging: {replicas: 1}")
    with pytest.raises(PlaybookInvalid, match="environment 'staging' does not set 'tier', which only environment "
                                              "production sets"):
        load_playbook(partial, environment="staging", parameters={})
    assert not [f for f in findings(partial) if f[0] == "PB308"]      # the file alone is fine: it depends on the run
    assert [f[0] for f in findings(partial, environment="staging")] == ["PB308"]   # and validate --env says so


def test_an_environment_variable_has_one_kind_of_value_and_a_typo_is_caught() -> None:
    mixed = TIERED.replace("production: {tier: production, replicas: 3}", "production: {tier: production, "
                                                                          "replicas: three, teir: x}")
    assert findings(mixed, environment="production") == [
        ("PB302", "environments.production.replicas",
         "variable 'replicas' is a string in environment 'production', but a number in variables; give it values "
         "of one kind"),
        ("PB503", "environments.production.teir",
         "environment 'production' sets 'teir', which neither a parameter nor any ${...} uses — did you mean 'tier'?"),
    ]


# -- other tools' spellings -----------------------------------------------------------------------

SPELLINGS = [
    # (where, their key, value) -> read as ours (PB504, with the key we read) or answered (PB101, with the advice)
    ("step", "ignore_errors", True, "continue_on_failure", None),
    ("step", "needs", "first", "depends_on", None),
    ("step", "depends", ["first"], "depends_on", None),
    ("step", "timeout", 30, "timeout_seconds", None),
    ("playbook", "vars", {"x": 1}, "variables", None),
    ("step", "retries", 3, None, "write retry: {max_attempts: N, base_delay: SECONDS}"),
    ("step", "delay", 5, None, "write retry: {max_attempts: N, base_delay: SECONDS}"),
    ("step", "until", "ok", None, "write the check as validations"),
    ("step", "register", "out", None, "a step's outputs are always kept"),
    ("step", "failed_when", "x", None, "write the check as validations"),
    ("step", "loop", [1, 2], None, "there are no loops"),
    ("step", "with_items", [1, 2], None, "there are no loops"),
    ("step", "parallel", True, None, "write parallel_group: NAME"),
    ("step", "vars", {"x": 1}, None, "variables belong to the playbook"),
    ("step", "environment", {"A": "1"}, None, "args: {env: {NAME: value}}"),
    ("step", "shell", "echo hi", None, "write action: shell, args: {command: ...}"),
    ("step", "become", True, None, "$PLAYBOOK_STEP_USER"),
    ("step", "on_failure", "continue", None, "a step says continue_on_failure"),
    ("playbook", "tasks", [], None, "steps are listed under 'steps'"),
    ("playbook", "environment", {"production": {}}, None, "did you mean 'environments'"),
    ("playbook", "handlers", [], None, "did you mean 'error_handlers'"),
]


@pytest.mark.parametrize("where, theirs, value, ours, advice", SPELLINGS, ids=[f"{w}-{k}" for w, k, *_ in SPELLINGS])
def test_other_tools_spellings_are_read_as_ours_or_answered(where: str, theirs: str, value: Any, ours: str | None,
                                                            advice: str | None) -> None:
    step = {"id": "second", "name": "Second", "action": "noop", **({theirs: value} if where == "step" else {})}
    text = playbook_yaml([noop("first", name="First"), step], **({theirs: value} if where == "playbook" else {}))
    found = findings(text)
    if ours is not None:
        assert found == [("PB504", f"steps[1].{theirs}" if where == "step" else theirs,
                          f"'{theirs}' is spelled '{ours}' here; read as '{ours}'")]
        loaded = load_playbook(text)
        holder = loaded.playbook.steps[1] if where == "step" else loaded.playbook
        assert getattr(holder, ours) == ([value] if isinstance(value, str) else value)
    else:
        (code, _, message), *_ = found
        assert code == "PB101" and message.startswith(f"unknown key '{theirs}'") and advice in message


def test_a_key_written_in_both_spellings_is_one_key_written_twice() -> None:
    text = playbook_yaml([noop("a", name="A", ignore_errors=False, continue_on_failure=True)])
    assert findings(text) == [("PB003", "steps[0].ignore_errors",
                               "'ignore_errors' and 'continue_on_failure' are one key written twice; keep "
                               "'continue_on_failure'")]
    with pytest.raises(PlaybookInvalid):
        load_playbook(text)


def test_a_problem_under_a_key_read_as_ours_points_where_it_is_written() -> None:
    text = "name: x\nsteps:\n  - id: a\n    name: A\n    action: noop\n    needs: [ghost]\n"
    (problem,) = [d for d in validate_playbook(text, "x.yaml") if d.code == "PB203"]
    assert (problem.line, problem.field) == (6, "steps[0].needs[0]")


def test_a_condition_struct_still_reads_the_old_way() -> None:
    assert Condition(type="equals", left=1, right=1).all_ is None
