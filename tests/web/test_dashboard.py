"""The dashboard in a real browser: start a gated run and approve it, pause and resume,
refusals said plainly, and metrics drawn from the runs — all live, never reloading the page."""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Page, expect

from events.commands import StartRun
from events.run import ApprovalGiven, RunPaused, RunResumed, RunStarted
from services.embedded import free_port
from tests.helpers import noop, person, playbook_yaml, wait_for_end
from ui.catalog_client import CatalogClient

pytestmark = [pytest.mark.integration, pytest.mark.browser]

GATED = playbook_yaml([
    {"id": "prepare", "name": "Prepare the release", "action": "shell", "timeout_seconds": 10,
     "args": {"command": "echo preparing the release; sleep 1.5"}},
    noop("deploy", approval_gate={"message": "Ship it?", "required_approvers": ["bob"]}),
    noop("verify"),
], name="gated-deploy", description="Waits, then asks bob before deploying.")
AT_THE_GATE = playbook_yaml([
    noop("prepare"), noop("deploy", approval_gate={"required_approvers": ["bob"]}), noop("verify"),
], name="gated-deploy")
SLOW = playbook_yaml([
    {"id": "settle", "action": "wait", "args": {"seconds": 2}},
    noop("check"),
], name="slow-deploy")
BROKEN = """name: broken
steps:
  - id: first
    action: nope
"""
NOT_YET_DONE = re.compile(r"^(pending|scheduled|running)$")


@pytest.fixture
async def gated_in_catalog(engine, library) -> None:
    """The catalog the start form offers: the gated playbook, in two versions; the second waits less."""
    catalog = CatalogClient(engine)
    second = GATED.replace("sleep 1.5", "sleep 0.5").replace("Waits,", "Waits less,")
    for version, text in (("1", GATED), ("2", second)):
        assert (await catalog.publish(text, version=version)).new


async def test_a_gated_run_started_from_the_page_goes_live_and_completes_once_approved(gated_in_catalog, dashboard,
                                                                                      engine):
    page = dashboard.page
    await dashboard.open("#/start")
    await dashboard.be("alice")
    await page.evaluate("window.sameDocument = 'still here'")   # gone if anything reloads the page

    await page.get_by_test_id("playbook-select").select_option("gated-deploy")
    description = page.get_by_test_id("playbook-description")
    await expect(page.get_by_test_id("playbook-version")).to_have_value("2")      # the latest first
    await expect(description).to_have_text("Waits less, then asks bob before deploying.")
    await page.get_by_test_id("playbook-version").select_option("1")
    await expect(description).to_have_text("Waits, then asks bob before deploying.")
    await dashboard.shot("0-start-form")
    await page.get_by_test_id("start").click()

    await expect(page).to_have_url(re.compile(r"#/runs/[A-Za-z0-9_-]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    await expect(dashboard.outcome).to_contain_text(f"Started run {run_id}")
    prepare, deploy = dashboard.step("prepare"), dashboard.step("deploy")
    await expect(prepare).to_have_attribute("data-status", NOT_YET_DONE)
    await expect(page.get_by_test_id("step-verify")).to_contain_text("after: deploy")
    await dashboard.shot("1-running")
    await expect(prepare).to_have_attribute("data-status", "succeeded")
    await expect(deploy).to_have_attribute("data-gate", "requested")
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "waiting_approval")
    await expect(page.get_by_test_id("gate-deploy")).to_contain_text("Ship it?")
    await expect(page.get_by_test_id("required-deploy")).to_have_text("bob")
    await dashboard.shot("2-waiting-for-approval")

    await dashboard.be("bob")
    await page.get_by_label("Comment").fill("looks good")
    await page.get_by_test_id("approve-deploy").click()

    await expect(dashboard.outcome).to_contain_text("accepted")
    await expect(deploy).to_have_attribute("data-status", "succeeded")
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "completed")
    await expect(page.get_by_test_id("approvals-deploy")).to_contain_text("bob — “looks good”")
    await expect(page.get_by_test_id("timeline").locator('[data-kind="RunCompleted"]')).to_have_count(1)
    await prepare.get_by_role("button", name="Prepare the release").click()     # its logs
    await expect(page.get_by_test_id("log-step")).to_have_value("prepare")
    await expect(page.get_by_test_id("logs").get_by_test_id("log-entry")).to_contain_text("preparing the release")
    await dashboard.shot("3-completed")
    assert await page.evaluate("window.sameDocument") == "still here"
    events = [event for _, event in await engine.events(run_id)]
    assert [e.actor for e in events if isinstance(e, RunStarted)] == ["alice"]        # the signed-in person
    (pin,) = [e.pin for e in events if isinstance(e, RunStarted)]
    assert (pin.name, pin.version, pin.published) == ("gated-deploy", "1", True)     # the version chosen, pinned
    assert [(e.actor, e.comment) for e in events if isinstance(e, ApprovalGiven)] == [("bob", "looks good")]


async def test_pausing_holds_the_run_and_resuming_lets_it_finish(dashboard, engine):
    page = dashboard.page
    await dashboard.open("#/runs")
    await dashboard.be("carol")
    await page.get_by_test_id("start-link").click()
    await page.get_by_label("Paste YAML").check()
    await page.get_by_label("Playbook YAML").fill(SLOW)
    await page.get_by_test_id("start").click()
    await expect(page).to_have_url(re.compile(r"#/runs/[A-Za-z0-9_-]+$"))
    run_id = page.url.rsplit("/", 1)[1]

    await page.get_by_label("Reason").fill("checking the dashboards first")
    await page.get_by_test_id("pause").click()
    status = page.get_by_test_id("run-status")
    await expect(status).to_have_attribute("data-status", "paused")
    await expect(dashboard.outcome).to_contain_text("accepted (RunPaused)")
    await expect(page.get_by_test_id("paused-by")).to_contain_text("carol — “checking the dashboards first”")
    await expect(dashboard.step("settle")).to_have_attribute("data-status", re.compile("^(succeeded|scheduled)$"))
    await expect(dashboard.step("check")).to_have_attribute("data-status", "pending")     # held while paused
    await expect(status).to_have_attribute("data-status", "paused")
    await expect(page.get_by_test_id("resume")).to_be_enabled()
    await dashboard.shot("1-paused")

    await page.get_by_test_id("resume").click()
    await expect(status).to_have_attribute("data-status", re.compile("^(running|completed)$"))
    await expect(status).to_have_attribute("data-status", "completed")
    await expect(dashboard.step("check")).to_have_attribute("data-status", "succeeded")
    await expect(page.get_by_test_id("resumed-by")).to_contain_text("carol")
    await expect(page.get_by_test_id("pause")).to_be_disabled()
    await dashboard.shot("2-resumed-and-completed")

    await page.get_by_test_id("nav-runs").click()
    await page.get_by_test_id("filter-text").fill("slow-deploy")
    row = page.get_by_test_id("run-row")
    await expect(row).to_have_count(1)
    await expect(row).to_have_attribute("data-status", "completed")
    await expect(row).to_contain_text("carol")
    events = [event for _, event in await engine.events(run_id)]
    assert [type(e) for e in events if isinstance(e, (RunPaused, RunResumed))] == [RunPaused, RunResumed]
    assert {e.actor for e in events if isinstance(e, (RunPaused, RunResumed))} == {"carol"}


async def test_refusals_are_shown_with_the_reason(dashboard, engine):
    page = dashboard.page
    await dashboard.open("#/start")
    await dashboard.be("mallory")
    await page.get_by_label("Paste YAML").check()
    await page.get_by_label("Playbook YAML").fill(BROKEN)
    await page.get_by_test_id("start").click()
    await expect(dashboard.outcome).to_have_attribute("data-kind", "error")
    await expect(dashboard.outcome).to_contain_text("invalid_playbook")
    problem = page.get_by_test_id("diagnostic").filter(has_text="unknown action 'nope'")
    await expect(problem).to_have_attribute("data-line", "4")
    await expect(problem).to_contain_text("line 4, column 13")
    await expect(problem).to_contain_text("step first")
    await dashboard.shot("1-invalid-playbook")

    reply = await engine.send(StartRun(playbook=AT_THE_GATE))
    await page.get_by_test_id("nav-runs").click()
    await page.locator(f'[data-testid="run-row"][data-run-id="{reply.run_id}"]').get_by_role("link").click()
    await expect(dashboard.step("deploy")).to_have_attribute("data-gate", "requested")
    await expect(page.get_by_test_id("approve-deploy")).to_be_disabled()     # the gate names bob
    # The button bypassed: the page's own command helper, as a forged click would send it.
    await page.evaluate(f"""import("/static/lib.js").then(({{ command }}) =>
        command("Approve", "/api/runs/{reply.run_id}/steps/deploy/approve", {{}}))""")
    await expect(dashboard.outcome).to_have_attribute("data-kind", "error")
    await expect(dashboard.outcome).to_contain_text("mallory may not approve this gate: it names bob")
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "waiting_approval")
    await dashboard.shot("2-approval-refused")

    await dashboard.be_the_admin()                                    # recorded, not just answered: admins see it
    await page.get_by_test_id("nav-audit").click()
    refused = page.locator('[data-testid="audit-row"][data-action="refused"]').filter(has_text="mallory")
    await expect(refused).to_contain_text(f"approve run {reply.run_id} of gated-deploy")
    signed_in = page.locator('[data-testid="audit-row"][data-action="sign_in"]').filter(has_text="mallory")
    await expect(signed_in).to_contain_text("opened dashboard session")     # tokens' records are an admin's too


async def start_pasted(dashboard, text: str, choose: Callable[[Page], Awaitable[None]]) -> Page:
    """alice starts pasted YAML from the start form, with what `choose` set on it; the run's page is shown."""
    page = dashboard.page
    await dashboard.open("#/start")
    await dashboard.be("alice")
    await page.get_by_label("Paste YAML").check()
    await page.get_by_label("Playbook YAML").fill(text)
    await choose(page)
    await page.get_by_test_id("start").click()
    await expect(page).to_have_url(re.compile(r"#/runs/[A-Za-z0-9_-]+$"))
    return page


async def test_a_run_started_to_go_on_past_failures_says_so_and_runs_every_step(dashboard, engine):
    page = await start_pasted(dashboard, playbook_yaml(
        [{"id": "first", "action": "shell", "args": {"command": "exit 1"}}, noop("second")], name="patch"),
        lambda page: page.get_by_label("When a step fails").select_option("continue"))
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "failed")
    await expect(dashboard.step("second")).to_have_attribute("data-status", "succeeded")
    await expect(page.get_by_test_id("run-on-failure")).to_have_text("continue (chosen at the start)")
    await dashboard.shot("1-went-on")


async def test_a_run_started_to_approve_each_step_waits_at_its_first(dashboard, engine):
    page = await start_pasted(dashboard, playbook_yaml([noop("drain"), noop("patch")], name="patch"),
                              lambda page: page.get_by_label("Approve each step").check())
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "waiting_approval")
    await expect(dashboard.step("drain")).to_have_attribute("data-gate", "requested")
    await expect(page.get_by_test_id("run-approval-required")).to_contain_text("every step waits for one")
    await dashboard.shot("1-waiting-at-the-first-step")


async def test_metrics_draw_charts_from_the_runs_as_they_happen(dashboard, engine):
    page = dashboard.page
    await dashboard.open("#/runs")
    await dashboard.be_the_admin()                   # resetting a breaker is an admin's
    await expect(page.get_by_test_id("live-state")).to_have_attribute("data-state", "live")
    service = f"{dashboard.server.url}/demo/services/checkout"
    nobody_home = f"http://127.0.0.1:{free_port()}/"
    good = playbook_yaml([{"id": "ping", "action": "http_request", "args": {"url": service}, "timeout_seconds": 10},
                          {"id": "settle", "action": "wait", "args": {"seconds": 0.05}}], name="healthy")
    bad = playbook_yaml([{"id": "call", "action": "http_request", "args": {"url": nobody_home}, "timeout_seconds": 10,
                          "circuit": {"failure_threshold": 1, "open_seconds": 600}}], name="flaky")
    runs = [await engine.send(StartRun(playbook=text)) for text in (good, good, bad)]
    for reply in runs:
        await wait_for_end(engine, reply.run_id)
    rows = page.get_by_test_id("run-row")
    await expect(rows.and_(page.locator('[data-status="completed"]'))).to_have_count(2)   # arrived live
    await expect(rows.and_(page.locator('[data-status="failed"]'))).to_have_count(1)
    await dashboard.shot("1-run-list")

    await page.get_by_test_id("nav-metrics").click()
    durations = page.get_by_test_id("chart-step-durations")
    await expect(durations.locator("svg rect.bar")).to_have_count(3)
    await expect(durations.locator('rect.bar[data-label="healthy › ping"]')).to_be_visible()
    success = page.get_by_test_id("chart-success")
    await expect(success.locator('rect.bar[data-label="healthy"]')).to_have_attribute("data-value", "1")
    await expect(success.locator('rect.bar[data-label="flaky"]')).to_have_attribute("data-value", "0")
    await expect(page.get_by_test_id("chart-errors").locator('svg rect.bar[data-category="network"]')).to_have_count(1)
    breaker = page.get_by_test_id("circuit-row")
    await expect(breaker).to_have_attribute("data-state", "open")
    runs_tile = page.get_by_test_id("tile-runs").locator(".tile-value")
    await expect(runs_tile).to_have_text("3")
    await dashboard.shot("2-metrics")

    await breaker.get_by_role("button", name="Reset").click()
    await expect(dashboard.outcome).to_contain_text("accepted (CircuitReset)")
    await expect(breaker).to_have_attribute("data-state", "closed")
    late = await engine.send(StartRun(playbook=bad))        # the charts follow without a reload
    await wait_for_end(engine, late.run_id)
    await expect(runs_tile).to_have_text("4")
    await expect(success.locator('rect.bar[data-label="flaky"] title')).to_contain_text("0 ok, 2 failed")
    await expect(breaker).to_have_attribute("data-state", "open")


async def test_a_running_steps_output_shows_live_then_its_record_replaces_it(dashboard, engine, tmp_path):
    go = tmp_path / "go"
    text = playbook_yaml([{"id": "migrate", "action": "shell", "timeout_seconds": 20, "args": {
        # It keeps saying so until the test lets it finish: some line comes after the page listens.
        "command": f"while [ ! -e {go} ]; do echo migrating table users; sleep 0.1; done; echo migrated"}}])
    page = dashboard.page
    reply = await engine.send(StartRun(playbook=text))
    await dashboard.open(f"#/runs/{reply.run_id}")
    await page.get_by_test_id("step-migrate").get_by_role("button").first.click()     # its logs
    live_block = page.get_by_test_id("logs").get_by_test_id("live-log")
    await expect(live_block).to_contain_text("migrating table users")
    await expect(dashboard.step("migrate")).to_have_attribute("data-status", "running")
    await dashboard.shot("1-live-output")
    go.touch()
    await expect(dashboard.step("migrate")).to_have_attribute("data-status", "succeeded")
    recorded = page.get_by_test_id("logs").get_by_test_id("log-entry")
    await expect(recorded).to_contain_text("migrating table users\nmigrated")
    await expect(live_block).to_have_count(0)


async def test_a_failed_run_is_retried_from_the_page_and_its_finished_steps_keep_their_outcome(
        dashboard, engine, tmp_path):
    needed = tmp_path / "release.tar"
    failing = playbook_yaml([
        noop("fetch"),
        {"id": "install", "action": "shell", "timeout_seconds": 10, "args": {"command": f"cat {needed}"}},
        noop("announce"),
    ], name="install-release")
    reply = await engine.send(StartRun(playbook=failing))
    await wait_for_end(engine, reply.run_id)
    page = dashboard.page
    await dashboard.open(f"#/runs/{reply.run_id}")
    await dashboard.sign_in((await person(engine, "vic", "viewer")).caller.credential, "vic")
    status = page.get_by_test_id("run-status")
    await expect(status).to_have_attribute("data-status", "failed")
    await expect(dashboard.step("install")).to_have_attribute("data-status", "failed")

    needed.write_text("the release")
    await expect(page.get_by_test_id("retry")).to_be_disabled()      # a viewer may look, not retry
    await page.evaluate(f"""import("/static/lib.js").then(({{ command }}) =>
        command("Retry", "/api/runs/{reply.run_id}/retry", {{}}))""")   # nor by going round the button
    await expect(dashboard.outcome).to_have_attribute("data-kind", "error")
    await expect(dashboard.outcome).to_contain_text("vic may not retry")
    await expect(status).to_have_attribute("data-status", "failed")

    await dashboard.be("olga")
    await page.get_by_label("Reason").fill("release file restored")
    await page.get_by_test_id("retry").click()
    await expect(dashboard.outcome).to_contain_text("accepted (RunRetried")
    await expect(status).to_have_attribute("data-status", "completed")
    await expect(dashboard.step("install")).to_have_attribute("data-status", "succeeded")
    await expect(page.get_by_test_id("retried-by")).to_contain_text("olga — “release file restored”")
    await expect(page.get_by_test_id("retry")).to_be_disabled()
    retried = page.get_by_test_id("timeline").locator('[data-kind="RunRetried"]')
    await expect(retried).to_contain_text("install, announce run again")
    await dashboard.shot("1-retried-and-completed")
    run = await engine.run(reply.run_id)
    assert (run.steps["fetch"].attempt.number, run.steps["install"].attempt.number) == (1, 2)
