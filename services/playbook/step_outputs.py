"""The outputs a step will have, known before it runs: what its action returns and what it exports.

A `${steps.<id>.<output>}`, a validation's `${stdout}` or an export's `from:` naming an output the step never
has failed only when the step (or the one reading it) ran: after its command had done its work.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from events.playbook import Step
from services.playbook.actions import ACTION_SPECS, holds_reference
from services.playbook.diagnostics import did_you_mean, listing

REFUSED_CALL = frozenset({"circuit_open", "retry_after"})  # what any step whose circuit breaker refused it holds
_ROOT = re.compile(r"[^.\[]*")


def returned(action: str, args: Mapping[str, Any]) -> frozenset[str] | None:
    """The keys the action's own outputs may hold; None when only the run can tell (an action the engine does
    not know, a noop whose outputs are a `${...}`)."""
    spec = ACTION_SPECS.get(action)
    if spec is None:
        return None
    names = set(spec.outputs)
    if action == "noop":
        given = args.get("outputs") or {}
        if not isinstance(given, dict) or holds_reference(list(given)):
            return None
        names.update(str(key) for key in given)
        if args.get("message") is not None:
            names.add("message")
    return frozenset(names)


def step_outputs(step: Step) -> frozenset[str] | None:
    """What `${steps.<id>.<output>}` may read of the step: its action's outputs and its exports."""
    names = returned(step.action, step.args)
    return None if names is None else names | {spec.name for spec in step.outputs}


def root(path: str) -> str:
    """`json` of `json.items[0].id`; `json` of `$.items[0]` (an export's JSONPath reads the JSON body)."""
    path = path.strip()
    return "json" if path.startswith("$") else _ROOT.match(path)[0]  # type: ignore[index]


def missing(name: str, names: frozenset[str]) -> str | None:
    """None when the outputs may hold `name`; else what they hold, with a guess at what was meant."""
    if name in names or name in REFUSED_CALL:
        return None
    return f"({listing(sorted(names)) or 'none'}){did_you_mean(name, names)}"
