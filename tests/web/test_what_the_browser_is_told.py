"""What the web tells the browser to protect the dashboard: no page may frame it, only its own scripts and styles
run, and no cache keeps what a signed-in person was shown.

The attacker's page is on another port of 127.0.0.1: the same site, so the browser sends the session cookie with a
frame's request, and a framed dashboard would be signed in with its Approve button under the attacker's click.
"""
from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import expect

from events.commands import StartRun
from tests.helpers import local_http, noop, playbook_yaml, wait_for_end
from ui.identity_client import IdentityClient

GATED = playbook_yaml([noop("prepare"), noop("deploy", approval_gate={"required_approvers": ["admin"]})],
                      name="gated-deploy")
FAILING = playbook_yaml([{"id": "break", "action": "shell", "args": {"command": "exit 3"}, "timeout_seconds": 10}],
                        name="always-fails")
# Collects what the page's Content-Security-Policy refused, from before the page's first script.
WATCH_POLICY = """window.refused = [];
document.addEventListener("securitypolicyviolation", (e) => window.refused.push(e.violatedDirective + " " + e.blockedURI
  + " " + (e.sourceFile || "") + ":" + e.lineNumber));"""


@pytest.mark.integration
@pytest.mark.browser
async def test_a_page_of_another_origin_cannot_frame_the_signed_in_dashboard(dashboard, engine) -> None:
    reply = await engine.send(StartRun(playbook=GATED))
    await dashboard.open(f"#/runs/{reply.run_id}")
    await expect(dashboard.page.get_by_test_id("reject-deploy")).to_be_enabled()      # signed in, the gate open

    async def evil(_request: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=f"""<!doctype html><html><body><h1>Win a prize</h1>
<iframe id="bait" src="{dashboard.server.url}/#/runs/{reply.run_id}" width="1200" height="800"
        onload="window.framed = true"></iframe></body></html>""")

    async with local_http([web.get("/", evil)]) as attacker:
        page = dashboard.page
        await page.goto(attacker + "/")
        await page.wait_for_function("window.framed === true")
        framed = next(frame for frame in page.frames if frame is not page.main_frame)
        assert not framed.url.startswith(dashboard.server.url), framed.url           # the browser refused to show it
        await expect(page.frame_locator("#bait").get_by_test_id("approve-deploy")).to_have_count(0)


@pytest.mark.integration
@pytest.mark.browser
async def test_every_view_of_the_dashboard_keeps_to_its_own_policy(dashboard, engine) -> None:
    failed = await engine.send(StartRun(playbook=FAILING))     # so the metrics draw the failures chart, in colours
    await wait_for_end(engine, failed.run_id)
    page = dashboard.page
    await page.context.add_init_script(WATCH_POLICY)
    await dashboard.open("#/runs")
    await expect(page.get_by_test_id("run-row")).to_have_count(1)
    await page.get_by_test_id("run-link").click()
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "failed")
    await page.get_by_test_id("nav-metrics").click()
    errors = page.get_by_test_id("chart-errors")
    await expect(errors.locator("svg rect.bar")).to_have_count(1)
    await expect(errors.locator(".swatch")).to_have_css("background-color", "rgb(209, 73, 91)")   # its colour, set
    await page.get_by_test_id("nav-audit").click()
    await expect(page.get_by_test_id("audit-row").first).to_be_visible()
    await page.get_by_test_id("nav-start").click()
    await expect(page.locator("h1")).to_have_text("Start a run")
    assert await page.evaluate("window.refused") == []


@pytest.mark.integration
async def test_what_a_signed_in_person_reads_is_never_kept_by_a_cache(web_server, engine) -> None:
    assert engine.caller.credential is not None
    bearer = {"Authorization": f"Bearer {engine.caller.credential}"}
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/api/session", "/api/runs", "/api/audit", "/api/nothing-here"):
            async with http.get(web_server.url + path, headers=bearer) as answer:
                assert answer.headers.get("Cache-Control") == "no-store", path
                assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"], path
                assert answer.headers["X-Content-Type-Options"] == "nosniff", path
        async with http.get(web_server.url + "/static/app.js") as script:
            assert script.headers["Cache-Control"] == "no-cache"         # kept, but checked with the server each time
        async with http.get(web_server.url + "/api/runs/stream", headers=bearer) as stream:
            assert stream.headers["Cache-Control"] == "no-cache"          # aiohttp-sse's own, for proxies that buffer
            assert stream.headers["X-Frame-Options"] == "DENY"


@pytest.mark.integration
@pytest.mark.browser
async def test_a_page_whose_session_is_revoked_asks_to_sign_in_again(dashboard, engine) -> None:
    reply = await engine.send(StartRun(playbook=GATED))
    await dashboard.open(f"#/runs/{reply.run_id}")
    page = dashboard.page
    await expect(page.get_by_test_id("live-state")).to_have_attribute("data-state", "live")
    session = next(c["value"] for c in await page.context.cookies() if c["name"] == "pb_session")
    assert engine.caller.credential is not None
    await IdentityClient(engine.nc, engine.caller.credential).revoke(session.split("_")[1], "signed out elsewhere")
    await expect(page.get_by_test_id("sign-in-note")).to_have_text("Your session ended; sign in again.")
    await expect(page.get_by_test_id("who")).to_be_empty()        # not a stale page still saying who is signed in
