"""Retries against a flaky local server: classified, backed off on durable timers, explained."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from aiohttp import web

from app.root import ALL_SERVICES
from events import subjects
from events.commands import CancelRun, StartRun
from events.run import (
    ApprovalRequested, RunCancelled, StepFailed, StepNotRetried, StepRemediationStarted, StepRetryScheduled,
    StepScheduled,
)
from services.store import EventStore
from tests.helpers import (
    local_http, playbook_yaml, running_engine, until, until_event, until_timer_armed, wait_for_end,
)
from ui.cli.render import status_table

pytestmark = pytest.mark.integration


@pytest.fixture
async def flaky():
    """Answers 503 (with Retry-After: 0) twice, then 200; counts the calls."""
    calls: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(1)
        if len(calls) <= 2:
            return web.json_response({"error": "warming up"}, status=503)
        return web.json_response({"status": "ok"})

    async with local_http([web.get("/flaky", handler)]) as url:
        yield f"{url}/flaky", calls


def flaky_step(url: str, **retry) -> list[dict]:
    return [{"id": "call", "action": "http_request", "args": {"url": url}, "timeout_seconds": 5,
             "retry": {"max_attempts": 4, "base_delay": 0.2, "jitter": "none", **retry}}]


async def test_a_flaky_call_is_retried_with_the_configured_backoff(engine, flaky) -> None:
    url, calls = flaky
    reply = await engine.send(StartRun(playbook=playbook_yaml(flaky_step(url))))
    events = await wait_for_end(engine, reply.run_id)
    assert type(events[-1]).__name__ == "RunCompleted"
    assert len(calls) == 3
    retries = [e for e in events if type(e).__name__ == "StepRetryScheduled"]
    assert [(r.attempt, r.delay_seconds, r.category) for r in retries] == [(2, 0.2, "temporary"), (3, 0.4, "temporary")]
    assert "http status 503" in retries[0].reason
    timers = [e for e in events if type(e).__name__ == "StepScheduled" and e.attempt > 1]
    assert [t.reason for t in timers] == ["retry after a temporary error"] * 2   # classified, not the executor's hint
    starts = [e.at for e in events if type(e).__name__ == "StepStarted"]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4          # the timers held the retries back


async def test_jitter_draws_a_delay_below_the_backoff(engine, flaky) -> None:
    url, _ = flaky
    reply = await engine.send(StartRun(playbook=playbook_yaml(flaky_step(url, jitter="full",
                                                                                        base_delay=0.5))))
    events = await wait_for_end(engine, reply.run_id)
    delays = [e.delay_seconds for e in events if type(e).__name__ == "StepRetryScheduled"]
    assert len(delays) == 2 and all(0 <= d <= cap for d, cap in zip(delays, (0.5, 1.0)))


async def test_retry_on_errors_without_temporary_does_not_retry_a_503(engine, flaky) -> None:
    url, calls = flaky
    steps = flaky_step(url, retry_on_errors=["network", "timeout"])
    reply = await engine.send(StartRun(playbook=playbook_yaml(steps)))
    events = await wait_for_end(engine, reply.run_id)
    names = [type(e).__name__ for e in events]
    assert names[-3:] == ["StepFailed", "StepNotRetried", "RunFailed"]
    assert len(calls) == 1
    assert "temporary is not in retry_on_errors" in events[-2].reason


async def test_attempts_run_out(engine, flaky) -> None:
    url, calls = flaky
    reply = await engine.send(StartRun(playbook=playbook_yaml(flaky_step(url, max_attempts=2))))
    events = await wait_for_end(engine, reply.run_id)
    not_retried = [e for e in events if type(e).__name__ == "StepNotRetried"]
    assert [(e.attempt, e.exhausted) for e in not_retried] == [(2, True)]
    assert type(events[-1]).__name__ == "RunFailed" and len(calls) == 2


async def test_a_backoff_that_ends_while_everything_is_down_retries_once_on_restart(nats_server, flaky,
                                                                                    settings) -> None:
    url, calls = flaky
    steps = [{"id": "call", "action": "http_request", "args": {"url": url}, "timeout_seconds": 5,
              "retry": {"max_attempts": 5, "base_delay": 2, "jitter": "none"}}]
    async with running_engine(settings) as engine:
        reply = await engine.send(StartRun(playbook=playbook_yaml(steps)))
        async for _, event in engine.follow(reply.run_id):
            if type(event).__name__ == "StepRetryScheduled":
                due = event.due
                break
        await until_timer_armed(engine)
    nats_server.stop()                                   # every process down during the backoff
    await asyncio.sleep(max(0.0, (due - datetime.now(timezone.utc)).total_seconds()) + 0.5)
    await nats_server.start()
    async with running_engine(settings) as engine:
        events = await wait_for_end(engine, reply.run_id, timeout=20)
    assert type(events[-1]).__name__ == "RunCompleted"
    attempts = [e.attempt for e in events if type(e).__name__ == "StepStarted"]
    assert attempts == [1, 2, 3]                         # each retry once: not zero times, not twice
    assert len(calls) == 3



async def test_an_error_handler_remediates_then_the_step_is_retried_at_once(engine, tmp_path) -> None:
    token = tmp_path / "token"

    async def guarded(request: web.Request) -> web.Response:
        return web.json_response({"ok": True}) if token.exists() else web.json_response({}, status=401)

    async with local_http([web.get("/api", guarded)]) as url:
        text = playbook_yaml(
            [{"id": "call", "action": "http_request", "args": {"url": f"{url}/api"}, "timeout_seconds": 5}],
            error_handlers=[{"category": "authentication", "then": "retry",
                             "run": {"action": "shell", "args": {"command": f"touch {token}"}, "timeout_seconds": 5}}])
        reply = await engine.send(StartRun(playbook=text))
        events = await wait_for_end(engine, reply.run_id)
    names = [type(e).__name__ for e in events]
    assert names[-1] == "RunCompleted"
    i = names.index("StepFailed")
    assert names[i:i + 4] == ["StepFailed", "StepRemediationStarted", "StepRemediated", "StepRetryScheduled"]
    assert events[i].category == "authentication"
    assert events[i + 3].delay_seconds == 0 and "error handler 1" in events[i + 3].reason


async def test_a_failed_remediation_lets_the_failure_stand(engine) -> None:
    text = playbook_yaml(
        [{"id": "call", "action": "shell", "args": {"command": "echo permission denied >&2; exit 1"},
          "timeout_seconds": 5}],
        error_handlers=[{"pattern": "permission denied",
                         "run": {"action": "shell", "args": {"command": "exit 2"}, "timeout_seconds": 5}}])
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id)
    names = [type(e).__name__ for e in events]
    assert names[-4:] == ["StepRemediationStarted", "StepRemediationFailed", "StepNotRetried", "RunFailed"]
    assert "remediation failed" in events[-2].reason


async def test_an_engine_error_handler_applies_to_every_playbook_and_is_pinned_on_the_run(
        settings, tmp_path) -> None:
    lock = tmp_path / "deploy.lock"
    lock.touch()
    handlers = tmp_path / "handlers.yaml"
    handlers.write_text(f"- pattern: 'deploy lock is held'\n"
                        f"  run: {{action: shell, args: {{argv: [rm, '{lock}']}}, timeout_seconds: 5}}\n")
    text = playbook_yaml([{"id": "deploy", "action": "shell", "timeout_seconds": 5, "args": {
        "command": f"if [ -e '{lock}' ]; then echo 'deploy lock is held' >&2; exit 1; fi"}}])
    async with running_engine(replace(settings, error_handlers_file=handlers)) as engine:
        reply = await engine.send(StartRun(playbook=text))
        events = await wait_for_end(engine, reply.run_id)
    names = [type(e).__name__ for e in events]
    assert names[-1] == "RunCompleted" and not lock.exists()
    assert events[0].engine_error_handlers[0].pattern == "deploy lock is held"   # the run says what applied
    i = names.index("StepRemediationStarted")
    assert names[i - 1:i + 3] == ["StepFailed", "StepRemediationStarted", "StepRemediated", "StepRetryScheduled"]
    assert "engine error handler 1" in events[i + 2].reason


async def test_a_retry_timer_that_fires_after_a_cancel_changes_nothing_in_the_cancelled_run(engine) -> None:
    step = {"id": "a", "action": "shell", "args": {"command": "exit 75"}, "timeout_seconds": 5,
            "retry": {"max_attempts": 3, "base_delay": 0.5, "jitter": "none", "retry_on_errors": ["unknown"]}}
    reply = await engine.send(StartRun(playbook=playbook_yaml([step, {"id": "b", "action": "noop"}])))
    await until_event(engine, reply.run_id, StepRetryScheduled)
    cancel = await engine.send(CancelRun(run_id=reply.run_id))
    assert [e["type"] for e in cancel.events] == ["RunCancelRequested", "RunCancelled"]

    async def fired() -> list[StepScheduled]:     # after the end: no follow waits for it, the stream holds it
        return [e for _, e in await engine.events(reply.run_id) if isinstance(e, StepScheduled) and e.attempt == 2]
    (late,) = await until(fired, what="the backoff's timer firing after the cancel")
    assert late.reason.startswith("retry after")
    run = await engine.run(reply.run_id)
    assert (run.status, run.steps["a"].status, run.steps["a"].attempt.number) == ("cancelled", "failed", 1)
    shown = status_table(run)
    assert "scheduled" not in shown and "attempt 2 at" not in shown    # no attempt 2 is coming


async def test_a_cancel_during_a_remediation_ends_the_run_and_no_retry_follows(engine, tmp_path) -> None:
    release = tmp_path / "release"
    text = playbook_yaml(
        [{"id": "a", "action": "shell", "args": {"command": "exit 3"}, "timeout_seconds": 5,
          "retry": {"max_attempts": 3, "base_delay": 0.1, "jitter": "none"}}, {"id": "b", "action": "noop"}],
        error_handlers=[{"category": "unknown", "then": "retry", "run": {
            "action": "shell", "args": {"command": f"while [ ! -e {release} ]; do sleep 0.05; done"},
            "timeout_seconds": 10}}])
    reply = await engine.send(StartRun(playbook=text))
    await until_event(engine, reply.run_id, StepRemediationStarted)
    cancel = await engine.send(CancelRun(run_id=reply.run_id))
    assert [e["type"] for e in cancel.events] == ["RunCancelRequested", "RunCancelled"]
    release.touch()

    js = engine.nc.jetstream()

    async def decided() -> bool:     # the resilience service is done with the failure
        info = await js.consumer_info(subjects.RUNS_STREAM, "resilience")
        return info.num_ack_pending == 0 and info.num_pending == 0
    await until(decided, what="the resilience service done with the failure")
    events = [e for _, e in await engine.events(reply.run_id)]
    end = next(i for i, e in enumerate(events) if isinstance(e, RunCancelled))
    assert [type(e).__name__ for e in events[end + 1:]] in ([], ["StepRemediated"])   # what ran is recorded
    run = await engine.run(reply.run_id)
    assert (run.status, run.steps["a"].status, run.steps["a"].retry.status) == ("cancelled", "failed", "")


async def test_a_verdict_not_to_retry_stored_just_before_a_crash_still_ends_the_run(settings) -> None:
    """The resilience service stored StepNotRetried and went before the run's end: the run does not hang."""
    async with running_engine(settings, ALL_SERVICES - {"resilience"}) as engine:
        step = {"id": "a", "action": "noop", "approval_gate": {}, "retry": {"max_attempts": 2}}
        reply = await engine.send(StartRun(playbook=playbook_yaml([step, {"id": "b", "action": "noop"}])))
        await until_event(engine, reply.run_id, ApprovalRequested)
        last = max(seq for seq, _ in await engine.events(reply.run_id))
        at = datetime.now(timezone.utc)
        nc = await settings.connect("test-crash-after-a-verdict")
        try:
            await EventStore(nc).append(reply.run_id, [
                StepFailed(run_id=reply.run_id, at=at, step_id="a", attempt=1, category="permanent", error="no"),
                StepNotRetried(run_id=reply.run_id, at=at, step_id="a", attempt=1, category="permanent",
                               reason="permanent is not in retry_on_errors")], expected=last)
        finally:
            await nc.close()
        events = await wait_for_end(engine, reply.run_id, timeout=15)
    assert type(events[-1]).__name__ == "RunFailed"
