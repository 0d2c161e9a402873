"""A playbook written with an Ansible user's habits runs as they expect: a `when` list must all hold, an
environment sets values of its own, and `vars`/`ignore_errors` are read as ours."""
from __future__ import annotations

import pytest

from events.commands import StartRun
from events.run import StepSkipped, StepSucceeded
from tests.helpers import wait_for_end

pytestmark = pytest.mark.integration

HABITS = """\
name: habits
parameters:
  - {name: notify, type: boolean, default: true}
environments:
  staging: {tier: staging, replicas: 1}
  production: {tier: production, replicas: 3}
vars:
  replicas: 1
steps:
  - id: scale
    action: shell
    args: {command: "echo ${tier} x${replicas}"}
    timeout_seconds: 10
  - id: page_oncall
    action: shell
    args: {command: "echo paging for ${tier}"}
    timeout_seconds: 10
    depends_on: [scale]
    when:
      - ${notify}
      - {type: equals, left: "${tier}", right: production}
  - id: optional_cleanup
    action: shell
    args: {command: "exit 3"}
    timeout_seconds: 10
    ignore_errors: true
"""


async def test_a_when_list_and_an_environments_own_values_decide_what_runs(engine) -> None:
    said: dict[tuple[str, str], str] = {}
    skipped: dict[str, list[str]] = {}
    for environment, values in (("production", {}), ("staging", {}), ("production", {"notify": "false"})):
        reply = await engine.send(StartRun(playbook=HABITS, source="habits.yaml", environment=environment,
                                           parameters=values))
        assert reply.accepted, reply.error
        events = await wait_for_end(engine, reply.run_id)
        assert type(events[-1]).__name__ == "RunCompleted"                # ignore_errors read as continue_on_failure
        key = f"{environment}{'-quiet' if values else ''}"
        said.update({(key, e.step_id): e.outputs["stdout"] for e in events if isinstance(e, StepSucceeded)})
        skipped[key] = [e.step_id for e in events if isinstance(e, StepSkipped)]
    assert said[("production", "scale")] == "production x3" and said[("staging", "scale")] == "staging x1"
    assert said[("production", "page_oncall")] == "paging for production"
    assert skipped == {"production": [], "staging": ["page_oncall"], "production-quiet": ["page_oncall"]}


PROBE_THEN_REPAIR = """\
name: probe-then-repair
parameters:
  - {name: hosts, type: list, default: [db1, db2]}
steps:
  - id: probe
    action: shell
    args: {command: "echo checked ${hosts[0]}; exit 3"}
    timeout_seconds: 10
    ignore_errors: true
  - id: repair
    action: shell
    args: {command: "echo repairing ${hosts[0]} after: ${steps.probe.stdout}"}
    timeout_seconds: 10
    depends_on: [probe]
    when: {type: equals, left: "${steps.probe.returncode}", right: 3}
"""


async def test_a_step_after_a_tolerated_failure_acts_on_what_the_failed_step_said(engine) -> None:
    reply = await engine.send(StartRun(playbook=PROBE_THEN_REPAIR, source="repair.yaml"))
    assert reply.accepted, reply.error
    events = await wait_for_end(engine, reply.run_id)
    assert type(events[-1]).__name__ == "RunCompleted"
    (repaired,) = [e for e in events if isinstance(e, StepSucceeded)]
    assert repaired.outputs["stdout"] == "repairing db1 after: checked db1"
