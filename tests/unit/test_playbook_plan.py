"""The plan as scenarios: what each step waits for, given how the playbook is written."""
from __future__ import annotations

import random

import pytest

from events.playbook import Plan, Step
from services.playbook import PlaybookInvalid, derive_plan, topological_order
from services.playbook import reachability
from services.playbook.plan import finished_before, plan_issues, plan_waves, upstream


def step(id: str, group: str | None = None, depends_on: list[str] | None = None) -> Step:
    return Step(id=id, action="noop", parallel_group=group, depends_on=depends_on)


def test_steps_without_hints_run_one_after_another():
    plan = derive_plan([step("a"), step("b"), step("c")])
    assert plan.needs == {"a": [], "b": ["a"], "c": ["b"]}


def test_a_parallel_group_follows_one_unit_and_is_followed_by_all_its_members():
    plan = derive_plan([step("build"), step("web1", "web"), step("web2", "web"), step("web3", "web"), step("check")])
    assert plan.needs == {"build": [], "web1": ["build"], "web2": ["build"], "web3": ["build"],
                          "check": ["web1", "web2", "web3"]}


def test_two_groups_in_a_row_wait_for_each_other_as_wholes():
    plan = derive_plan([step("a1", "a"), step("a2", "a"), step("b1", "b"), step("b2", "b")])
    assert plan.needs == {"a1": [], "a2": [], "b1": ["a1", "a2"], "b2": ["a1", "a2"]}


def test_explicit_depends_on_replaces_the_implicit_order():
    plan = derive_plan([step("a"), step("b"), step("c", depends_on=["a"]), step("d", depends_on=[])])
    assert plan.needs == {"a": [], "b": ["a"], "c": ["a"], "d": []}


def test_a_group_member_with_depends_on_still_counts_for_the_step_after_the_group():
    plan = derive_plan([step("a"), step("g1", "g"), step("g2", "g", depends_on=[]), step("z")])
    assert plan.needs["g2"] == [] and plan.needs["z"] == ["g1", "g2"]


def test_depends_on_may_point_forward_when_that_makes_no_cycle():
    plan = derive_plan([step("a", depends_on=["b"]), step("b", depends_on=[])])
    assert topological_order(plan) == ["b", "a"]


def test_a_repeated_dependency_is_needed_once():
    assert derive_plan([step("a"), step("b", depends_on=["a", "a"])]).needs["b"] == ["a"]


def test_a_cycle_is_named_from_the_depends_on_that_closes_it():
    _, issues = plan_issues([step("a"), step("b"), step("c"), step("d", depends_on=["c"]), step("e")])
    assert issues == []
    _, issues = plan_issues([step("a", depends_on=["c"]), step("b"), step("c")])
    [cycle] = issues
    assert cycle.code == "PB204" and "a -> c -> b -> a" in cycle.message
    assert cycle.path == ("steps", 0, "depends_on", 0)


def test_a_step_that_waits_for_itself_is_a_cycle():
    with pytest.raises(PlaybookInvalid, match="a -> a"):
        derive_plan([step("a", depends_on=["a"])])


def test_a_split_parallel_group_names_the_step_in_between():
    _, issues = plan_issues([step("a", "g"), step("x"), step("b", "g")])
    [split] = issues
    assert split.code == "PB205" and split.path == ("steps", 2, "parallel_group")
    assert "'x' comes between 'a' and 'b'" in split.message


def test_unknown_and_duplicate_ids_are_reported_with_their_place():
    _, issues = plan_issues([step("build"), step("build"), step("deploy", depends_on=["build", "biuld"])])
    assert [(i.code, i.path) for i in issues] == [("PB201", ("steps", 1, "id")),
                                                  ("PB203", ("steps", 2, "depends_on", 1))]
    assert issues[1].message.endswith("did you mean 'build'?")


def test_topological_order_keeps_the_written_order_when_free():
    plan = derive_plan([step("a"), step("g1", "g"), step("g2", "g"), step("z")])
    assert topological_order(plan) == ["a", "g1", "g2", "z"]


def test_topological_order_refuses_a_cyclic_plan():
    with pytest.raises(PlaybookInvalid, match="cycle"):
        topological_order(Plan(needs={"a": ["b"], "b": ["a"]}))


def test_upstream_is_every_step_sure_to_have_finished_before():
    plan = derive_plan([step("a"), step("g1", "g"), step("g2", "g"), step("z")])
    assert upstream(plan) == {"a": set(), "g1": {"a"}, "g2": {"a"}, "z": {"a", "g1", "g2"}}


def test_plan_waves_group_steps_by_depth_and_leave_out_a_cycle_instead_of_looping() -> None:
    assert plan_waves(Plan(needs={"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})) == [["a"], ["b", "c"], ["d"]]
    assert plan_waves(Plan(needs={"a": [], "b": ["c"], "c": ["b"], "d": ["a"]})) == [["a"], ["d"]]
    assert plan_waves(Plan(needs={})) == []


def test_finished_before_answers_only_the_pairs_asked():
    plan = derive_plan([step("a"), step("g1", "g"), step("g2", "g"), step("z"), step("late", depends_on=["a"])])
    asked = [("z", "a"), ("z", "g2"), ("g2", "g1"), ("late", "z"), ("late", "a"), ("a", "a"), ("ghost", "a")]
    assert finished_before(plan, asked) == {("z", "a"), ("z", "g2"), ("late", "a")}


def test_finished_before_sees_steps_caught_in_and_behind_a_cycle():
    plan = Plan(needs={"a": ["c"], "b": ["a"], "c": ["b"], "d": ["c"], "e": []})
    asked = [("a", "b"), ("b", "a"), ("a", "a"), ("d", "a"), ("d", "e"), ("e", "d")]
    assert finished_before(plan, asked) == {("a", "b"), ("b", "a"), ("a", "a"), ("d", "a")}


@pytest.mark.parametrize("budget", [1 << 28, 1])
def test_finished_before_agrees_with_upstream_on_random_plans_in_one_pass_or_many(budget, monkeypatch):
    monkeypatch.setattr(reachability, "BUDGET_BITS", budget)
    monkeypatch.setattr(reachability, "_WORD", 3)   # many passes when the budget is tight
    rng = random.Random(budget)
    for _ in range(200):
        ids = [f"s{i}" for i in range(rng.randint(1, 25))]
        steps = [step(i, rng.choice([None, None, "g"]),
                      depends_on=rng.sample(ids, rng.randint(0, min(3, len(ids)))) if rng.random() < 0.3 else None)
                 for i in ids]
        plan, _ = plan_issues(steps)
        asked = [(rng.choice(ids), rng.choice(ids)) for _ in range(30)]
        truth = upstream(plan)
        assert finished_before(plan, asked) == {(a, b) for a, b in asked if b in truth[a]}


def test_a_plan_written_in_order_answers_references_far_back_without_a_sweep(monkeypatch):
    def no_sweep(*args: object) -> None:
        raise AssertionError("swept")
    monkeypatch.setattr(reachability, "_sweep", no_sweep)
    steps = [step(f"s{i}", "g" if 10 <= i < 15 else None, depends_on=["s3", "s8"] if i == 9 else None)
             for i in range(3_000)]
    plan, _ = plan_issues(steps)
    asked = [(f"s{i}", f"s{j}") for i in range(16, 3_000, 7) for j in (0, i // 2, i - 1)]
    assert finished_before(plan, asked) == set(asked)


def test_depends_on_a_parallel_group_by_its_name_says_which_steps_to_name():
    _, issues = plan_issues([step("web1", "web"), step("web2", "web"), step("report", depends_on=["web"])])
    (found,) = issues
    assert found.code == "PB203" and "it is a parallel_group: name its steps (web1, web2)" in found.message
