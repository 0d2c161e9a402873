"""Browser fixtures: Debian's Chromium driven by Playwright on the dashboard, with screenshots.

No browser is downloaded: Playwright drives the system Chromium. Without it the dashboard
tests are skipped on a developer's machine (saying how to install it) and fail where
`PLAYBOOK_REQUIRE_BROWSER=1` is set, as `.ci/run` does after installing it.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import person
from ui.client import EngineClient
from ui.web.app import WebServer

CHROMIUM = Path(os.environ.get("PLAYBOOK_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
LAPTOP = {"width": 1366, "height": 860}
WAIT_MS = 15_000     # the longest any one expectation waits for the page


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]):
    """Remember each phase's report on the test, so a fixture can tell that the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        missing = (f"no Chromium at {CHROMIUM}: the dashboard tests drive the system browser "
                   "(Debian: apt-get install chromium; elsewhere set PLAYBOOK_TEST_CHROMIUM)")
        if os.environ.get("PLAYBOOK_REQUIRE_BROWSER") == "1":
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("the dashboard tests need playwright: pip install -e '.[test]'", pytrace=False)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


class Dashboard:
    """The dashboard open in one browser tab, in the words the tests use."""

    def __init__(self, page: Any, server: WebServer, engine: EngineClient, name: str) -> None:
        self.page, self.server, self.engine, self.name = page, server, engine, name
        self.signed_in_as: str | None = None
        self.errors: list[str] = []
        for old in SCREENSHOTS.glob(f"{name}-*.png"):     # the artifacts show this run only
            old.unlink()

    async def open(self, route: str = "#/runs") -> None:
        """Open a page of the dashboard; a fresh browser signs in first, as the local admin."""
        if self.signed_in_as is None:
            await self.be_the_admin()
        await self.page.goto(f"{self.server.url}/{route}")

    async def be(self, user: str) -> None:
        """Sign in as `user` (a token of their own: operator and approver everywhere) with a one-time link, as
        `playbook up` prints one, then come back to the page shown before."""
        await self.sign_in((await person(self.engine, user)).caller.credential, user)

    async def be_the_admin(self) -> None:
        """Sign in as the local admin, whose token the identity service wrote."""
        assert self.engine.caller.credential is not None
        await self.sign_in(self.engine.caller.credential, "admin")

    async def sign_in(self, credential: str, name: str) -> None:
        from playwright.async_api import expect
        back = await self.page.evaluate("location.hash")
        await self.page.goto(self.server.sign_in_link(credential))
        await expect(self.page.get_by_test_id("signed-in-as")).to_have_text(name)
        self.signed_in_as = name
        if back.startswith("#/"):
            await self.page.evaluate(f"location.hash = {json.dumps(back)}")

    @property
    def outcome(self) -> Any:
        return self.page.get_by_test_id("outcome")

    def step(self, step_id: str) -> Any:
        return self.page.get_by_test_id(f"step-{step_id}")

    async def shot(self, label: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{label}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
async def dashboard(browser: Any, web_server: WebServer, engine: EngineClient,
                    request: pytest.FixtureRequest) -> AsyncIterator[Dashboard]:
    """A fresh browser context (own localStorage) with the dashboard's server beside the engine."""
    from playwright.async_api import expect
    expect.set_options(timeout=WAIT_MS)
    context = await browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    board = Dashboard(page, web_server, engine, re.sub(r"[^\w.-]+", "_", request.node.name))
    page.on("pageerror", lambda err: board.errors.append(str(err)))
    try:
        yield board
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            await board.shot("FAILED")
    finally:
        await context.close()
    assert not board.errors, f"the page threw: {board.errors}"
