"""The run page as people with scoped grants see it: a control is enabled only for whom the engine would let act.

A viewer who clicks Pause is refused by the run service either way; a button that may never work for them
says "you may" when they may not. The page asks the engine what the signed-in person may do to the run it shows.
"""
from __future__ import annotations

import pytest
from playwright.async_api import expect

from events.commands import StartRun
from tests.helpers import noop, person, playbook_yaml, refusals, wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.browser]

AT_THE_GATE = playbook_yaml([noop("prepare"), noop("deploy", approval_gate={"required_approvers": ["bob"]})],
                            name="gated-deploy", environments={"staging": {}, "production": {}})
CONTROLS = ("pause", "cancel")
DECISIONS = ("approve-deploy", "reject-deploy")


async def _at_the_gate(engine) -> str:
    reply = await engine.send(StartRun(playbook=AT_THE_GATE, environment="staging"))
    assert reply.accepted, reply.error
    async for _, event in engine.follow(reply.run_id):
        if type(event).__name__ == "ApprovalRequested":
            return reply.run_id
    raise AssertionError("the run never reached its gate")


@pytest.mark.parametrize(("who", "grant", "may_steer", "may_decide"), [
    ("vic", "viewer:gated-deploy@staging", False, False),
    ("oscar", "operator:gated-deploy@staging", True, False),
    ("bob", "approver:gated-deploy@staging", False, True),
    ("olga", "operator:gated-deploy@production", False, False),
])
async def test_a_run_page_enables_only_what_the_signed_in_person_may_do(dashboard, engine, who, grant, may_steer,
                                                                         may_decide) -> None:
    run_id = await _at_the_gate(engine)
    page = dashboard.page
    await page.goto(dashboard.server.url)
    await dashboard.sign_in((await person(engine, who, grant, "viewer:gated-deploy@staging")).caller.credential, who)
    await page.evaluate(f"location.hash = '#/runs/{run_id}'")
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "waiting_approval")
    await expect(page.get_by_test_id("gate-deploy")).to_have_attribute("data-gate-status", "requested")
    for control in CONTROLS:
        button = page.get_by_test_id(control)
        await (expect(button).to_be_enabled() if may_steer else expect(button).to_be_disabled())
    for decision in DECISIONS:
        button = page.get_by_test_id(decision)
        await (expect(button).to_be_enabled() if may_decide else expect(button).to_be_disabled())
    await dashboard.shot(f"{who}-at-the-gate")


async def test_a_run_page_shows_the_insights_of_its_environment_to_a_reader_of_it(dashboard, engine) -> None:
    """Insights are learned per environment: a reader of a playbook's staging runs reads what they taught there,
    and nothing is refused."""
    run_id = await _at_the_gate(engine)
    page = dashboard.page
    await page.goto(dashboard.server.url)
    await dashboard.sign_in((await person(engine, "eve", "operator:*@staging")).caller.credential, "eve")
    await page.evaluate(f"location.hash = '#/runs/{run_id}'")
    await expect(page.get_by_test_id("insights")).to_contain_text("1 runs in staging")
    await expect(page.get_by_test_id("pause")).to_be_enabled()
    assert [r for r in await refusals(engine.nc) if r.principal == "eve"] == []


async def test_the_metrics_page_of_someone_who_may_not_read_them_says_so_once(dashboard, engine) -> None:
    """Metrics count every playbook's runs: a scoped viewer is refused them. The page says why and stops there;
    it does not open their stream, which would be refused too and asked again every half minute while the tab
    stays open, each time a refusal in the access records."""
    page = dashboard.page
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    await page.goto(dashboard.server.url)
    await dashboard.sign_in((await person(engine, "vic", "viewer:gated-deploy@staging")).caller.credential, "vic")
    await page.evaluate("location.hash = '#/metrics'")
    await expect(page.get_by_text("Cannot load metrics: vic may not read the engine")).to_be_visible()
    await expect(page.get_by_test_id("live-state")).to_have_attribute("data-state", "closed")
    assert not [url for url in asked if "/api/metrics/stream" in url]
    assert [r.action for r in await refusals(engine.nc) if r.principal == "vic"] == ["read"]


async def test_retrying_a_run_started_with_unsafe_shell_is_offered_only_with_that_grant(dashboard, engine) -> None:
    failing = playbook_yaml([{"id": "fix", "action": "shell", "args": {"command": "exit 3"}, "timeout_seconds": 5}],
                            name="hotfix", environments={"staging": {}})
    reply = await engine.send(StartRun(playbook=failing, environment="staging", allow_unsafe_shell=True))
    assert reply.accepted, reply.error
    await wait_for_end(engine, reply.run_id)
    page = dashboard.page
    await page.goto(dashboard.server.url)
    for who, grants, may_retry in (("oscar", ("operator:hotfix@staging",), False),
                                   ("uma", ("operator:hotfix@staging", "unsafe_shell"), True)):
        await dashboard.sign_in((await person(engine, who, *grants)).caller.credential, who)
        await page.evaluate(f"location.hash = '#/runs/{reply.run_id}'")
        await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "failed")
        await expect(page.get_by_test_id("rollback")).to_be_enabled()
        retry = page.get_by_test_id("retry")
        await (expect(retry).to_be_enabled() if may_retry else expect(retry).to_be_disabled())
        await page.evaluate("location.hash = '#/runs'")


async def test_whoever_started_a_run_is_not_offered_its_gate_to_approve(dashboard, engine) -> None:
    """Four eyes: the starter may reject at the run's gate, never approve it (unless the gate allows it)."""
    anyone = playbook_yaml([noop("prepare"), noop("deploy", approval_gate={})], name="gated-deploy",
                           environments={"staging": {}})
    alice = await person(engine, "alice")
    reply = await alice.send(StartRun(playbook=anyone, environment="staging"))
    assert reply.accepted, reply.error
    page = dashboard.page
    await page.goto(dashboard.server.url)
    await dashboard.sign_in(alice.caller.credential, "alice")
    await page.evaluate(f"location.hash = '#/runs/{reply.run_id}'")
    await expect(page.get_by_test_id("gate-deploy")).to_have_attribute("data-gate-status", "requested")
    await expect(page.get_by_test_id("reject-deploy")).to_be_enabled()
    await expect(page.get_by_test_id("approve-deploy")).to_be_disabled()
    await dashboard.be("bob")                                    # anyone else with approver may
    await expect(page.get_by_test_id("approve-deploy")).to_be_enabled()
