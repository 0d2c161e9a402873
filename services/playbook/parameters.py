"""A run's parameter values: defaults, then the chosen environment, then the caller, typed and checked."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from events.playbook import Parameter, Playbook
from services.playbook.destinations import allowance_problem, typed_value
from services.playbook.diagnostics import Issue, Path, did_you_mean, listing, raise_if_errors, short
from services.playbook.yaml_source import HIGHEST_INTEGER, LOWEST_INTEGER, YamlSyntaxError, load_yaml

_WRONG = object()  # what _coerce returns for a value that does not fit; None is a value
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}
_WORDS = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
          "list": "a list", "object": "a mapping", "host": "a host name or IP address (no scheme, port or path)",
          "url": "an absolute http:// or https:// URL"}


def resolve_parameters(playbook: Playbook, *, environment: str | None = None,
                       given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The values a run starts with; raises `PlaybookInvalid` when any is missing, unknown or ill-typed."""
    values, issues = check_parameters(playbook, environment=environment, given=given or {})
    raise_if_errors(issues)
    return values


def check_parameters(playbook: Playbook, *, environment: str | None = None,
                     given: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[Issue]]:
    """Resolved values and the problems found; `given=None` means no caller yet, so what is required but has no
    value is what a run must give (PB505, an info), not missing (PB301)."""
    declared, issues = _declared(playbook)
    issues += _environment_issues(playbook, declared, skip=environment)
    values: dict[str, Any] = {}
    rejected: set[str] = set()

    def put(name: str, value: Any, path: Path, source: str) -> None:
        typed, problem = _typed(declared[name][1], value)
        if problem:
            issues.append(Issue(problem[0], f"parameter '{name}' {problem[1]} (from {source})", path))
            rejected.add(name)
        else:
            values[name] = typed

    for name, (i, parameter) in declared.items():
        if parameter.default is not None:
            put(name, parameter.default, ("parameters", i, "default"), "its default")
    chosen: dict[str, Any] = {}
    if environment is not None:
        if environment not in playbook.environments:
            known = listing(playbook.environments) or "none are declared"
            issues.append(Issue("PB304", f"unknown environment '{environment}'"
                                         f"{did_you_mean(environment, playbook.environments)} (known: {known})",
                                ("environments",), on_key=True))
        chosen = playbook.environments.get(environment, {})
    for name, value in chosen.items():
        if name in declared:
            put(name, value, ("environments", environment or "", name), f"environment '{environment}'")
    if environment in playbook.environments and "environment" in declared \
            and "environment" not in chosen.keys() | set(given or {}):
        put("environment", environment, ("parameters", declared["environment"][0]), "the chosen environment")
    for name, value in (given or {}).items():
        if name not in declared:
            known = listing(declared) or "it declares none"
            issues.append(Issue("PB305", f"parameter '{name}' was given but the playbook does not declare it"
                                         f"{did_you_mean(name, declared)} (declared: {known})", in_file=False))
        elif value is not None:
            put(name, value, ("parameters", declared[name][0]), "the caller")
    missing = [(name, i) for name, (i, parameter) in declared.items()
               if parameter.required and name not in values and name not in rejected]
    if given is not None:
        issues += [Issue("PB301", f"parameter '{name}' is required and has no value; pass it with -p {name}=<value>",
                         ("parameters", i)) for name, i in missing]
    else:
        issues += [_to_give(playbook, name, i) for name, i in missing]
    return values, issues


def _to_give(playbook: Playbook, name: str, i: int) -> Issue:
    """No caller yet: not an error, but the file alone does not run (PB505, an info)."""
    setters = [env_name for env_name, env_values in playbook.environments.items() if name in env_values]
    also = f", or choose an environment that sets it ({listing(setters)}) with --env" if setters else ""
    return Issue("PB505", f"parameter '{name}' is required and has no default; a run must give it with "
                          f"-p {name}=<value>{also}", ("parameters", i))


def _declared(playbook: Playbook) -> tuple[dict[str, tuple[int, Parameter]], list[Issue]]:
    declared: dict[str, tuple[int, Parameter]] = {}
    issues: list[Issue] = []
    for i, parameter in enumerate(playbook.parameters):
        if parameter.name in declared:
            issues.append(Issue("PB306", f"parameter '{parameter.name}' is declared twice (first at parameters"
                                         f"[{declared[parameter.name][0]}]); remove one", ("parameters", i, "name")))
        else:
            declared[parameter.name] = (i, parameter)
    return declared, issues


def _environment_issues(playbook: Playbook, declared: dict[str, tuple[int, Parameter]],
                        skip: str | None) -> list[Issue]:
    """Every environment, chosen or not, gives declared parameters values of their type (other names it
    sets are its own variables: `environments.py`)."""
    issues: list[Issue] = []
    for env_name, env_values in playbook.environments.items():
        for name, value in env_values.items():
            if name in declared and env_name != skip and (problem := _typed(declared[name][1], value)[1]):
                issues.append(Issue(problem[0], f"parameter '{name}' {problem[1]} (from environment '{env_name}')",
                                    ("environments", env_name, name)))
    return issues


def _typed(parameter: Parameter, value: Any) -> tuple[Any, tuple[str, str] | None]:
    """The value in the declared type, or the code and words of what is wrong with it."""
    typed = _coerce(parameter.type, value)
    if typed is _WRONG:
        return None, ("PB302", f"must be {_WORDS[parameter.type or 'string']}, got {short(value)}")
    if parameter.choices is not None and typed not in parameter.choices:
        options = ", ".join(repr(choice) for choice in parameter.choices)
        hint = did_you_mean(typed, [str(c) for c in parameter.choices]) if isinstance(typed, str) else ""
        return None, ("PB303", f"is {short(typed)}, not one of its choices ({options}){hint}")
    if problem := allowance_problem(parameter.type, typed, parameter.pattern, parameter.allowed_hosts):
        return None, ("PB307", f"is {short(typed)}, which {problem}")
    return typed, None



def _coerce(kind: str | None, value: Any) -> Any:
    """Strings (from `-p key=value`) become the declared type; other values must already have it."""
    match kind, value:
        case None, _:
            return value
        case "string", str():
            return value
        case "integer", bool():
            return _WRONG
        case "integer", int():
            return value if LOWEST_INTEGER <= value <= HIGHEST_INTEGER else _WRONG
        case "integer", str() if _INTEGER.fullmatch(value):
            return _integer(value)
        case "number", bool():
            return _WRONG
        case "number", int():
            return value if LOWEST_INTEGER <= value <= HIGHEST_INTEGER else _WRONG
        case "number", float():
            return value if math.isfinite(value) else _WRONG
        case "number", str():
            return _number(value)
        case "boolean", bool():
            return value
        case "boolean", str() if value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        case "list", list():
            return value
        case "object", dict():
            return value
        case "list" | "object", str():
            parsed = _flow(value)
            return parsed if isinstance(parsed, list if kind == "list" else dict) else _WRONG
        case "host" | "url", _:
            typed = typed_value(kind, value)
            return _WRONG if typed is None else typed
    return _WRONG


def _number(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return _WRONG
    if not math.isfinite(number):
        return _WRONG
    return _integer(text) if _INTEGER.fullmatch(text) else number


def _integer(text: str) -> Any:
    """Digits as an integer a run can keep (64 bits); Python itself refuses to read more than 4,300 of them."""
    if len(text.strip().lstrip("+-").lstrip("0")) > 20:
        return _WRONG
    number = int(text)
    return number if LOWEST_INTEGER <= number <= HIGHEST_INTEGER else _WRONG


def _flow(text: str) -> Any:
    """A caller's `[a, b]` or `{"k": 1}`, through the same guarded loader as playbooks."""
    try:
        return load_yaml(text).data
    except YamlSyntaxError:
        return _WRONG
