"""A run the engine gave up on, in a real browser: its page says who stopped it and why, the timeline has the
record, and the metrics count it."""
from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.helpers import wait_for_end
from tests.integration.test_abandoned_messages import RUN, abandoned_at, forge, waiting_at_its_gate

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def test_a_run_the_engine_gave_up_on_says_so_on_its_page_and_in_the_metrics(dashboard, engine):
    gate_seq = await waiting_at_its_gate(engine)
    await forge(engine.nc, abandoned_at(RUN, "approval", "ApprovalRequested", gate_seq, "a"))   # a simulated bug
    await wait_for_end(engine, RUN)
    page = dashboard.page
    await dashboard.open(f"#/runs/{RUN}")
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "failed")
    await expect(page.get_by_test_id("stopped-by-engine")).to_contain_text("the engine, which gave up on a message")
    await expect(page.get_by_test_id("failure")).to_contain_text("the engine gave up on ApprovalRequested")
    await expect(page.get_by_text("approval gave up on message", exact=False).first).to_be_visible()
    await dashboard.shot("1-run")
    await dashboard.open("#/metrics")
    await expect(page.get_by_test_id("tile-abandoned")).to_contain_text("1")
