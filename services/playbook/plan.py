"""The order steps run in: sequence, parallel groups and explicit depends_on as one graph.

Steps run in the order written. Consecutive steps sharing a `parallel_group` form one
unit: each member needs the unit before the group, the step after the group needs every
member. A step with `depends_on` (even `[]`) needs exactly those steps instead.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence

from events.playbook import Plan, Step
from services.playbook.diagnostics import Issue, Names, raise_if_errors
from services.playbook.reachability import reachable_pairs


def derive_plan(steps: Sequence[Step]) -> Plan:
    """The plan of well-formed steps; raises `PlaybookInvalid` on duplicate ids, unknown needs, splits or cycles."""
    plan, issues = plan_issues(steps)
    raise_if_errors(issues)
    return plan


def plan_issues(steps: Sequence[Step]) -> tuple[Plan, list[Issue]]:
    """The plan and every problem found while deriving it (paths point into `steps`)."""
    issues: list[Issue] = []
    position: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.id in position:
            issues.append(Issue("PB201", f"step id '{step.id}' is already used by step {position[step.id] + 1}; "
                                         "give every step its own id", ("steps", i, "id"), step_id=step.id))
        else:
            position[step.id] = i
    known = Names(position)
    groups: dict[str, list[str]] = {}
    for step in steps:
        if step.parallel_group is not None:
            groups.setdefault(step.parallel_group, []).append(step.id)
    needs: dict[str, list[str]] = {}
    before: list[str] = []  # the unit the current unit follows
    unit: list[str] = []  # the current unit: one step, or the members of one parallel group
    group: str | None = None
    closed: dict[str, str] = {}  # parallel group -> its last member, to spot a group resumed later
    for i, step in enumerate(steps):
        if position[step.id] != i:
            continue
        if step.parallel_group is None or step.parallel_group != group:
            if group is not None:
                closed[group] = unit[-1]
            if step.parallel_group in closed:
                issues.append(Issue(
                    "PB205", f"parallel group '{step.parallel_group}' is split: step '{unit[-1]}' comes between "
                             f"'{closed[step.parallel_group]}' and '{step.id}'; members of a group must be consecutive",
                    ("steps", i, "parallel_group"), step_id=step.id))
            before, unit, group = unit or before, [], step.parallel_group
        unit.append(step.id)
        needs[step.id] = list(before) if step.depends_on is None else _explicit(step, i, known, groups, issues)
    if any(position[need] >= position[step] for step, wanted in needs.items() if steps[position[step]].depends_on
           for need in wanted):  # only a depends_on that points forward can close a cycle
        for cycle in _cycles(needs):
            issues.append(_cycle_issue(cycle, steps, position))
    return Plan(needs=needs), issues


def upstream(plan: Plan) -> Mapping[str, frozenset[str]]:
    """For each step, every step sure to have finished before it starts (its needs, transitively).

    Searched per step when asked: a table of every step's upstream would grow with the
    square of the steps. To ask about many pairs at once, use `finished_before`.
    """
    return _Upstream(plan.needs)


def finished_before(plan: Plan, asked: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The asked `(step, other)` pairs in which `other` is sure to have finished before `step` starts."""
    return reachable_pairs(plan.needs, asked)


class _Upstream(Mapping[str, frozenset[str]]):
    def __init__(self, needs: dict[str, list[str]]) -> None:
        self._needs = needs

    def __getitem__(self, step: str) -> frozenset[str]:
        seen: set[str] = set()
        todo = list(self._needs[step])
        while todo:
            if (other := todo.pop()) not in seen and other in self._needs:
                seen.add(other)
                todo.extend(self._needs[other])
        return frozenset(seen)

    def __iter__(self) -> Iterator[str]:
        return iter(self._needs)

    def __len__(self) -> int:
        return len(self._needs)


def topological_order(plan: Plan) -> list[str]:
    """Steps in an order that respects every need; ties keep the written order."""
    order = _kahn(plan)
    if len(order) < len(plan.needs):
        cycle = _cycles(plan.needs)[0]
        raise_if_errors([Issue("PB204", f"dependency cycle: {' -> '.join(cycle)}", step_id=cycle[0])])
    return order


def _kahn(plan: Plan) -> list[str]:
    """Kahn's algorithm, earliest written step first; steps in or behind a cycle are left out."""
    steps = list(plan.needs)
    index = {step: i for i, step in enumerate(steps)}
    waiting = {step: {need for need in needs if need in index} for step, needs in plan.needs.items()}
    dependents: dict[str, list[str]] = {step: [] for step in steps}
    for step, needs in waiting.items():
        for need in needs:
            dependents[need].append(step)
    ready = [index[step] for step, needs in waiting.items() if not needs]
    heapq.heapify(ready)
    result: list[str] = []
    while ready:
        step = steps[heapq.heappop(ready)]
        result.append(step)
        for dependent in dependents[step]:
            waiting[dependent].discard(step)
            if not waiting[dependent]:
                heapq.heappush(ready, index[dependent])
    return result


def _explicit(step: Step, i: int, known: Names, groups: Mapping[str, list[str]], issues: list[Issue]) -> list[str]:
    needs: dict[str, None] = {}  # in the order written, each once
    for j, need in enumerate(step.depends_on or []):
        if need not in known:
            hint = (f"; it is a parallel_group: name its steps ({', '.join(groups[need])})" if need in groups
                    else known.hint(need))
            issues.append(Issue("PB203", f"depends_on names '{need}', which is not a step in this playbook{hint}",
                                ("steps", i, "depends_on", j), step_id=step.id))
        else:
            needs[need] = None
    return list(needs)


def _cycles(needs: dict[str, list[str]]) -> list[list[str]]:
    """One named cycle per set of steps caught in one, e.g. `["a", "b", "a"]` (a needs b needs a).

    At most `_NAMED_CYCLES`: each is an error to fix, and a playbook could close one per step.
    """
    found: dict[frozenset[str], list[str]] = {}
    state: dict[str, int] = {}  # 1: on the current path, 2: fully explored
    at: dict[str, int] = {}  # where each step of the current path stands on it
    for root in needs:
        if root in state:
            continue
        path, stack = [root], [iter(needs[root])]
        state[root], at[root] = 1, 0
        while stack and len(found) < _NAMED_CYCLES:
            need = next(stack[-1], None)
            if need is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(need) == 1:
                cycle = path[at[need]:] + [need]
                found.setdefault(frozenset(cycle), cycle)
            elif need not in state and need in needs:
                state[need], at[need] = 1, len(path)
                path.append(need)
                stack.append(iter(needs[need]))
    return list(found.values())


_NAMED_CYCLES = 100


def _cycle_issue(cycle: list[str], steps: Sequence[Step], position: dict[str, int]) -> Issue:
    """Name the cycle starting at a step whose own depends_on closes it, and point there."""
    members = cycle[:-1]
    for k, step_id in enumerate(members):
        step = steps[position[step_id]]
        following = members[(k + 1) % len(members)]
        if step.depends_on and following in step.depends_on:
            members = members[k:] + members[:k]
            path = ("steps", position[step_id], "depends_on", step.depends_on.index(following))
            break
    else:
        path = ("steps", position[members[0]])
    shown = members if len(members) <= 50 else members[:25] + [f"... {len(members) - 50} more ..."] + members[-25:]
    named = " -> ".join(shown + [members[0]])
    return Issue("PB204", f"dependency cycle: {named} (each step waits for the next); "
                          "remove one of these depends_on entries", path, step_id=members[0])


def plan_waves(plan: Plan) -> list[list[str]]:
    """Steps grouped by how deep they sit in the plan: a wave's steps may run at the same time.

    Written order within a wave; steps in or behind a dependency cycle (never in a valid plan) are left out.
    """
    depth: dict[str, int] = {}
    for step in _kahn(plan):   # every need comes before the step that needs it
        depth[step] = 1 + max((depth[need] for need in plan.needs[step] if need in depth), default=-1)
    waves: list[list[str]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for step in plan.needs:
        if step in depth:
            waves[depth[step]].append(step)
    return waves
