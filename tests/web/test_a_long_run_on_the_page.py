"""A run of many steps on its page: its history comes in batches, measured once a batch, not once an event, and
dependencies too many to draw are said, not drawn.

Laid out again after each of its events, the page of a finished run of 2,000 steps took six minutes to show, frozen;
two parallel groups of a hundred, one after the other, are 10,000 arrows.
"""
from __future__ import annotations

import pytest
from playwright.async_api import expect

from events.commands import StartRun
from tests.helpers import noop, playbook_yaml, wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# Two parallel groups of 40, the second after the first: each of its steps needs all 40 of the first (1,600 needs).
TWO_GROUPS = playbook_yaml([noop(f"check-{i}", parallel_group="checks") for i in range(40)]
                           + [noop(f"deploy-{i}", parallel_group="deploys") for i in range(40)], name="two-groups")
# Counts what forces the page's layout (reading an element's scrollHeight) and the animation frames' callbacks.
COUNT_LAYOUTS = """window.layouts = 0; window.frames = 0;
const height = Object.getOwnPropertyDescriptor(Element.prototype, "scrollHeight");
Object.defineProperty(Element.prototype, "scrollHeight",
  { get() { window.layouts += 1; return height.get.call(this); } });
const frame = window.requestAnimationFrame.bind(window);
window.requestAnimationFrame = (callback) => frame((t) => { window.frames += 1; callback(t); });"""


async def test_a_long_finished_run_is_laid_out_once_a_batch_and_its_too_many_arrows_are_said(dashboard, engine):
    reply = await engine.send(StartRun(playbook=TWO_GROUPS))
    events = len(await wait_for_end(engine, reply.run_id))
    page = dashboard.page
    await page.context.add_init_script(COUNT_LAYOUTS)
    await dashboard.open(f"#/runs/{reply.run_id}")
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "completed")
    await expect(page.get_by_test_id("raw-count")).to_have_text(str(events))
    layouts, frames = await page.evaluate("[window.layouts, window.frames]")
    assert layouts <= 2 * frames + 10, f"{layouts} layouts for {events} events in {frames} frames"
    await expect(page.get_by_test_id("arrows-omitted")).to_contain_text("1600 dependencies between steps")
    await expect(page.locator("svg.arrows path.arrow")).to_have_count(0)
    await expect(page.get_by_test_id("step-deploy-39")).to_have_attribute("data-status", "succeeded")
