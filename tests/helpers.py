"""Small builders shared by tests: times, playbooks, started events."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from events.run import RunStarted
from services.playbook import load_playbook

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def playbook_yaml(steps: list[dict[str, Any]], **top: Any) -> str:
    import yaml
    return yaml.safe_dump({"name": top.pop("name", "test"), **top, "steps": steps}, sort_keys=False)


def started(run_id: str, steps: list[dict[str, Any]], *, values: dict | None = None,
            environment: str | None = None, actor: str = "alice", dry_run: bool = False, **top: Any) -> RunStarted:
    """`RunStarted` of a playbook with these steps; `values` are the parameter values given."""
    loaded = load_playbook(playbook_yaml(steps, **top), "test.yaml", parameters=values or {},
                           environment=environment)
    return RunStarted(run_id=run_id, at=T0, actor=actor, playbook=loaded.playbook, plan=loaded.plan,
                      parameters=loaded.parameters, environment=loaded.environment, dry_run=dry_run)


def noop(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "action": "noop", **extra}


def as_dict(event: msgspec.Struct) -> dict[str, Any]:
    return msgspec.to_builtins(event)
