"""Real runs through the engine against flaky local endpoints: the learning service, running beside
the other services, recommends what those endpoints call for."""
from __future__ import annotations

import pytest
from aiohttp import web

from events import subjects
from events.commands import RetryRun, StartRun
from tests.helpers import failing_until, local_http, playbook_yaml, wait_for_end
from ui.insights import LearningClient

pytestmark = pytest.mark.integration

RUNS = 25
GONE_RUNS = 5


@pytest.fixture
async def endpoints():
    """/health always answers; /flaky answers 503 but to every third call; /gone is 404 for good."""
    calls = {"flaky": 0}

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def flaky(_request: web.Request) -> web.Response:
        calls["flaky"] += 1
        return web.json_response({}, status=200 if calls["flaky"] % 3 == 0 else 503)

    async def gone(_request: web.Request) -> web.Response:
        return web.json_response({}, status=404)

    async with local_http([web.get("/health", health), web.get("/flaky", flaky), web.get("/gone", gone)]) as url:
        yield url


async def run_to_end(engine, text: str) -> str:
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id)
    return type(events[-1]).__name__


async def test_runs_against_flaky_endpoints_teach_retry_settings_a_validator_and_what_not_to_retry(
        engine, endpoints) -> None:
    deploy = playbook_yaml([
        {"id": "health", "action": "http_request", "args": {"url": f"{endpoints}/health"}, "timeout_seconds": 5},
        {"id": "fetch", "action": "http_request", "args": {"url": f"{endpoints}/flaky"}, "timeout_seconds": 5,
         "retry": {"max_attempts": 4, "base_delay": 0.01, "jitter": "none"}},
    ], name="deploy")
    cleanup = playbook_yaml([
        {"id": "remove", "action": "http_request", "args": {"url": f"{endpoints}/gone"}, "timeout_seconds": 5,
         "retry": {"max_attempts": 3, "base_delay": 0.01, "jitter": "none", "retry_on_errors": ["permanent"]}},
    ], name="cleanup")
    assert {await run_to_end(engine, deploy) for _ in range(RUNS)} == {"RunCompleted"}
    assert {await run_to_end(engine, cleanup) for _ in range(GONE_RUNS)} == {"RunFailed"}
    last = (await engine.nc.jetstream().stream_info(subjects.RUNS_STREAM)).state.last_seq

    insights = await LearningClient(engine.nc, engine.headers()).insights(after=last, wait=30)
    learned = {p.playbook: p for p in insights.playbooks}
    fetch = next(s for s in learned["deploy"].steps if s.step == "fetch")
    assert (fetch.passed, fetch.recovered_at_attempt, fetch.failures_by_category) == (
        RUNS, {3: RUNS}, {"temporary": 2 * RUNS})
    found = {(r.kind, r.step): r for p in insights.playbooks for r in p.recommendations}
    assert set(found) == {("retry", "fetch"), ("validator", "health"), ("do_not_retry", "remove")}
    assert found["retry", "fetch"].suggestion == {
        "retry": {"max_attempts": 3, "retry_on_errors": ["temporary"], "base_delay": 0.021}}
    assert found["validator", "health"].suggestion == {
        "validators": [{"type": "http_status", "url": f"{endpoints}/health"}]}
    assert found["do_not_retry", "remove"].message == (
        f"step `remove`: permanent (HTTP 404) never recovered in {2 * GONE_RUNS} tries: do not retry `permanent`")
    target, = insights.targets
    assert target.calls == RUNS * 4 + GONE_RUNS * 3 and target.steps == ["cleanup/remove", "deploy/fetch",
                                                                         "deploy/health"]


async def test_a_run_retried_to_completion_is_learned_as_completed_with_what_ran_after_the_retry(
        engine, tmp_path) -> None:
    """A failed run retried in place goes on: its new ending replaces the old one, and the attempts after the
    retry are learned too (the step that gave up at first did not give up in the end)."""
    text = failing_until("mended", tmp_path / "tries", {"id": "after", "action": "noop"})
    reply = await engine.send(StartRun(playbook=text))
    assert type((await wait_for_end(engine, reply.run_id))[-1]).__name__ == "RunFailed"
    assert (await engine.send(RetryRun(run_id=reply.run_id, parameters={"fail_until": "3"}))).accepted
    assert type((await wait_for_end(engine, reply.run_id, after_retry=True))[-1]).__name__ == "RunCompleted"
    last = (await engine.nc.jetstream().stream_info(subjects.RUNS_STREAM)).state.last_seq

    insights = await LearningClient(engine.nc, engine.headers()).insights("mended", after=last, wait=30)
    mended, = insights.playbooks
    assert (mended.runs, mended.outcomes, mended.success_rate) == (1, {"completed": 1}, 1.0)
    steps = {s.step: s for s in mended.steps}
    assert (steps["call"].attempts, steps["call"].passed, steps["call"].gave_up) == (3, 1, 0)
    assert steps["call"].recovered_at_attempt == {}     # a person mended it: no retry setting would have
    assert (steps["after"].attempts, steps["after"].passed) == (1, 1)
