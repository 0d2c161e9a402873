"""The run page's "What past runs taught" panel: the playbook's record and each step's, from the learning service."""
from __future__ import annotations

import pytest
from playwright.async_api import expect

from events import subjects
from events.commands import StartRun
from tests.helpers import noop, playbook_yaml, wait_for_end
from ui.insights import LearningClient

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def test_a_run_page_shows_what_the_playbooks_past_runs_taught(dashboard, engine):
    yaml_text = playbook_yaml([noop("prepare"), noop("ship")], name="taught")
    run_ids = []
    for _ in range(3):
        reply = await engine.send(StartRun(playbook=yaml_text))
        await wait_for_end(engine, reply.run_id)
        run_ids.append(reply.run_id)
    last = (await engine.nc.jetstream().stream_info(subjects.RUNS_STREAM)).state.last_seq
    await LearningClient(engine.nc, engine.headers()).insights(after=last, wait=30)

    await dashboard.open(f"#/runs/{run_ids[-1]}")
    page = dashboard.page
    summary = page.get_by_test_id("insights-summary")
    await expect(summary).to_contain_text("3 runs without an environment, 100% completed")
    steps = page.get_by_test_id("insights-steps")
    await expect(steps.locator("tbody tr")).to_have_count(2)
    await expect(steps.locator('tr[data-step="prepare"]')).to_contain_text("100%")
    await expect(steps.locator('tr[data-step="ship"] td').first).to_have_text("ship")
    await dashboard.shot("insights")

