"""Keys as other tools spell them (Ansible, GitHub Actions, the original design), read or answered.

A key that means exactly what one of ours means is read as ours, with an info (PB504) naming
our spelling: `ignore_errors` is `continue_on_failure`. A key that does not map cleanly is an
unknown key (PB101) whose message says what to write instead: `retries` needs `retry:`'s
fields, `register` has no equivalent because outputs are always kept.
"""
from __future__ import annotations

from typing import Any

from services.playbook.diagnostics import Issue, Path

# Where a key is written ("playbook" or "step") -> their spelling -> ours.
READ_AS: dict[str, dict[str, str]] = {
    "playbook": {"vars": "variables"},
    "step": {"ignore_errors": "continue_on_failure", "needs": "depends_on", "depends": "depends_on",
             "timeout": "timeout_seconds"},
}
# Where a key is written -> their spelling -> what to write here instead.
ANSWERS: dict[str, dict[str, str]] = {
    "playbook": {
        "tasks": "steps are listed under 'steps' (each with an id and an action)",
        "hosts": "a playbook runs its steps where the engine runs; name hosts in each step's args or parameters",
        "environment": "did you mean 'environments' (values per environment, chosen with --env)?",
        "handlers": "did you mean 'error_handlers' (a remediation run when a step fails)?",
    },
    "step": {
        "retries": "write retry: {max_attempts: N, base_delay: SECONDS}",
        "delay": "write retry: {max_attempts: N, base_delay: SECONDS}",
        "until": "write the check as validations (a failed one fails the attempt) and retry: {max_attempts: N}",
        "register": "a step's outputs are always kept: read them as ${steps.<id>.<output>} (export fields with "
                    "outputs: [{name, from}])",
        "failed_when": "write the check as validations: a failed validation fails the step",
        "changed_when": "steps report what they did in their outputs; there is no 'changed' state",
        "loop": "there are no loops: write a step per item (a parallel_group runs them together)",
        "with_items": "there are no loops: write a step per item (a parallel_group runs them together)",
        "parallel": "steps that share a parallel_group run together: write parallel_group: NAME",
        "vars": "variables belong to the playbook: write them under its 'variables' (or an environment's values)",
        "environment": "a shell step's process environment is args: {env: {NAME: value}}; values per run "
                       "environment are the playbook's 'environments'",
        "shell": "write action: shell, args: {command: ...}",
        "command": "write action: shell, args: {command: ...} (or args: {argv: [...]})",
        "become": "steps run as $PLAYBOOK_STEP_USER; run sudo in the command if the step needs it",
        "notify": "to act on a failure, write error_handlers on the playbook",
        "tags": "there are no tags: use when to skip steps",
        "delegate_to": "a step runs where the engine's executors run; reach other hosts through its command",
        "on_failure": "on_failure is the playbook's (stop, rollback, continue); a step says continue_on_failure",
    },
}


def read_as_ours(data: dict[Any, Any]) -> tuple[list[Issue], dict[Path, Path]]:
    """Rename their keys to ours in place: the infos (or conflicts) and where each renamed key was written."""
    issues: list[Issue] = []
    written: dict[Path, Path] = {}
    _rename(data, (), READ_AS["playbook"], issues, written)
    steps = data.get("steps")
    if isinstance(steps, list):
        theirs = READ_AS["step"].keys()
        for i, step in enumerate(steps):
            if isinstance(step, dict) and not theirs.isdisjoint(step):
                _rename(step, ("steps", i), READ_AS["step"], issues, written)
    return issues, written


def answer(path: Path, key: str) -> str | None:
    """What to write instead of another tool's key at this place, if we know it."""
    where = "playbook" if not path else "step" if len(path) == 2 and path[0] == "steps" else None
    return ANSWERS[where].get(key) if where else None


def _rename(mapping: dict[Any, Any], at: Path, table: dict[str, str], issues: list[Issue],
            written: dict[Path, Path]) -> None:
    for theirs, ours in table.items():
        if theirs not in mapping:
            continue
        if ours in mapping:
            issues.append(Issue("PB003", f"'{theirs}' and '{ours}' are one key written twice; keep '{ours}'",
                                at + (theirs,), on_key=True))
            del mapping[theirs]
            continue
        value = mapping.pop(theirs)
        mapping[ours] = [value] if ours == "depends_on" and isinstance(value, str) else value
        written[at + (ours,)] = at + (theirs,)
        issues.append(Issue("PB504", f"'{theirs}' is spelled '{ours}' here; read as '{ours}'", at + (ours,),
                            on_key=True))
