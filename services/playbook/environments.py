"""Environments' own variables: names an environment sets that are not parameters.

`production: {tier: production}` gives the run a variable `tier` when it runs in production,
over a `variables:` entry of that name if there is one. Its values are typed like parameters:
every environment (and `variables:`) gives the name a value of one kind. A name only
environments set may be used only by runs in an environment that sets it.
"""
from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from events.playbook import Playbook
from services.playbook.diagnostics import Issue, did_you_mean, listing


def environment_variables(playbook: Playbook, environment: str | None, parameters: Collection[str]) -> dict[str, Any]:
    """The values the chosen environment gives to variables (its own, and the playbook's it overrides)."""
    chosen = playbook.environments.get(environment or "", {}) if environment else {}
    return {name: value for name, value in chosen.items() if name not in parameters}


def variable_issues(playbook: Playbook, parameters: Collection[str], used: Collection[str], *,
                    environment: str | None, running: bool) -> Iterator[Issue]:
    """Kinds that disagree between environments, names nothing uses, names the run's environment lacks.

    `running`: values are being resolved for a run (not only the file checked), so the chosen
    environment (or its absence) must give every variable the steps use; not running, a variable
    only environments set is what a run must choose an environment for (PB505, an info).
    """
    kinds: dict[str, tuple[str, str]] = {name: (_kind(value), "variables") for name, value in
                                         playbook.variables.items() if value is not None}
    setters: dict[str, list[str]] = {}
    for env_name, values in playbook.environments.items():
        for name, value in values.items():
            if name in parameters:
                continue
            setters.setdefault(name, []).append(env_name)
            where = ("environments", env_name, name)
            if name not in used and name not in playbook.variables:
                known = [*used, *parameters, *playbook.variables]
                yield Issue("PB503", f"environment '{env_name}' sets '{name}', which neither a parameter nor any "
                                     f"${{...}} uses{did_you_mean(name, known)}", where, on_key=True)
            kind = _kind(value)
            first = kinds.setdefault(name, (kind, f"environment '{env_name}'"))
            if value is not None and first[0] != kind:
                yield Issue("PB302", f"variable '{name}' is {_WORDS[kind]} in environment '{env_name}', but "
                                     f"{_WORDS[first[0]]} in {first[1]}; give it values of one kind", where)
    for name, envs in setters.items():
        if name in playbook.variables or name not in used or environment in envs:
            continue
        where_set = f"only environment{'s' if len(envs) > 1 else ''} {listing(envs)} set{'' if len(envs) > 1 else 's'}"
        if not running:
            yield Issue("PB505", f"'{name}' is a variable {where_set}; a run must choose one with --env",
                        ("environments",), on_key=True)
            continue
        if environment is None:
            problem = f"'{name}' is a variable {where_set}; choose one with --env, or give it a value under variables"
        else:
            problem = (f"environment '{environment}' does not set '{name}', which {where_set}; set it there, or give "
                       "it a value under variables")
        yield Issue("PB308", problem, ("environments", environment) if environment else ("environments",),
                    on_key=environment is not None)


_WORDS = {"string": "a string", "number": "a number", "boolean": "true or false", "list": "a list",
          "object": "a mapping", "null": "empty"}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else "string"

