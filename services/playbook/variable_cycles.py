"""Variables that refer to each other in a circle: no run could resolve them, so validation says so.

A variable's value may use other variables (`url: "https://${host}"`); the chosen environment's values
replace the playbook's, so each environment is looked at with its own values over `variables:`.
"""
from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any

from events.playbook import Playbook
from services.playbook.diagnostics import Issue, Path
from services.playbook.references import ReferenceSyntaxError, find_references


def variable_cycle_issues(playbook: Playbook, parameters: Collection[str]) -> list[Issue]:
    """One PB212 per circle, at the first variable of it as written; parameters win over variables, so a
    variable naming a parameter closes no circle."""
    views: list[tuple[Path, Mapping[str, Any], Mapping[str, Any]]] = [(("variables",), playbook.variables, {})]
    views += [(("environments", name), {**playbook.variables, **own}, own)
              for name, own in playbook.environments.items()]
    issues: list[Issue] = []
    seen: set[frozenset[str]] = set()
    for where, values, own in views:
        uses = {name: _names_in(value, parameters) & values.keys() for name, value in values.items()
                if name not in parameters}
        for circle in _circles(uses):
            if frozenset(circle) in seen:
                continue
            seen.add(frozenset(circle))
            start = next((k for k, name in enumerate(circle) if name in own), 0)   # where an environment closes it
            circle = circle[start:] + circle[:start]
            at = (where if circle[0] in own else ("variables",)) + (circle[0],)
            issues.append(Issue("PB212", f"variables refer to each other in a circle: "
                                         f"{' -> '.join(circle + circle[:1])}; no run could resolve them, so give one "
                                         "of them a value of its own", at, on_key=True))
    return issues


def _names_in(value: Any, parameters: Collection[str]) -> set[str]:
    if isinstance(value, str):
        try:
            refs = find_references(value) if "${" in value else []
        except ReferenceSyntaxError:
            return set()   # reported where references are checked
        return {root for ref in refs if ref.kind == "name" and (root := ref.name.split(".")[0]) not in parameters}
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return set().union(*(_names_in(item, parameters) for item in items))


def _circles(uses: Mapping[str, set[str]]) -> Iterator[list[str]]:
    """Each circle as the path that closes it, found by a walk that remembers the names on its way."""
    done: set[str] = set()
    for start in uses:
        if start in done:
            continue
        path, stack = [start], [iter(sorted(uses[start]))]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                done.add(path.pop())
                stack.pop()
            elif step in path:
                yield path[path.index(step):]
            elif step not in done:
                path.append(step)
                stack.append(iter(sorted(uses.get(step, ()))))
