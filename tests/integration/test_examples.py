"""The example playbooks a new user runs first: valid, and they run against local endpoints."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from events.commands import StartRun
from services.playbook import validate_playbook
from tests.helpers import wait_for_end

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Each example as the catalog holds it: its version, and the start of its text's sha256. Every engine
# publishes the examples at start; a text changed under a published version is refused there (a version
# never changes), so an upgraded engine would keep the old text and log the refusal at each start.
PUBLISHED = {"deploy-demo.yaml": ("1.1", "1f2a06766c4ea00c"), "hello.yaml": ("1", "698e30372df91042")}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates_without_findings(path: Path) -> None:
    assert [d.format() for d in validate_playbook(path.read_text(), str(path))] == []


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_an_example_changes_only_with_a_new_version(path: Path) -> None:
    text = path.read_bytes()
    now = (str(yaml.safe_load(text).get("version", "1")), hashlib.sha256(text).hexdigest()[:16])
    assert now == PUBLISHED.get(path.name), (
        f"{path.name} is now {now}: give a changed example a new `version:`, then record both in PUBLISHED")


async def test_the_deploy_demo_in_staging_skips_production_steps_and_completes(engine, web_server) -> None:
    demo_site = web_server.url
    text = (EXAMPLES / "deploy-demo.yaml").read_text()
    reply = await engine.send(StartRun(playbook=text, source="deploy-demo.yaml",
                                       parameters={"base_url": demo_site}, environment="staging"))
    assert reply.accepted, reply.error
    events = await wait_for_end(engine, reply.run_id)
    assert type(events[-1]).__name__ == "RunCompleted"
    run = await engine.run(reply.run_id)
    status = {s.id: s.status for s in run.steps.values()}
    assert status.pop("notify_production") == status.pop("production_traffic") == "skipped"
    assert set(status.values()) == {"succeeded"}
    assert run.steps["check_version"].attempt.outputs["current_version"] == "1.0.0"
    assert run.steps["backup"].attempt.outputs["backup_file"] == "backup-checkout-1.0.0.tar.gz"
    assert run.steps["health_check"].attempt.outputs["status_code"] == 200


async def test_a_failed_validation_fails_the_step_with_category_validation(engine, web_server) -> None:
    demo_site = web_server.url
    text = f"""
name: check
steps:
  - id: health
    action: http_request
    args: {{url: "{demo_site}/demo/services/x"}}
    timeout_seconds: 5
    validations:
      - {{type: contains, left: "${{body}}", right: "on fire"}}
"""
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id)
    failed = [e for e in events if type(e).__name__ == "StepFailed"]
    assert [(f.step_id, f.category) for f in failed] == [("health", "validation")]
    assert "contains" in failed[0].error and "on fire" in failed[0].error
    assert failed[0].outputs["status_code"] == 200      # what the step saw is kept for the operator
