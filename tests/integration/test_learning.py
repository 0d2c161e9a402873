"""The learning service over a generated history, on SQLite and on a real PostgreSQL: what it learns,
what it recommends (by value), and that a rebuild, a restart or a second writer change no count."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from events import subjects
from events.insights import Insights, LearningStatus, Recommendation
from services.embedded import free_port
from services.learning.config import LearningConfig, postgres_settings
from services.learning.errors import LearningRefused
from services.learning import service as learning_service
from services.learning.service import LearningService
from services.playbook_store import PlaybookStore
from services.store import EventStore
from tests.learning import (  # noqa: F401 - fixtures
    DEPLOY_RUNS, admin_headers, deploy, identity, learning_config, record, record_history,
)
from tests.helpers import until
from tests.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures
from ui.insights import LearningClient, recommendations_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def learned(nc, learning_config: LearningConfig, identity,
                  admin_headers) -> AsyncIterator[tuple[LearningService, Insights]]:
    """The generated history recorded, a learning service that has learned all of it, and its insights."""
    store = EventStore(nc)
    await store.ensure_stream()
    last = await record_history(store)
    service = LearningService(nc, store, learning_config, PlaybookStore(nc), identity.guard)
    await service.start()
    try:
        yield service, await LearningClient(nc, admin_headers).insights(after=last, wait=30)
    finally:
        await service.stop()


def by_kind(recommendations: list[Recommendation]) -> dict[tuple[str, str | None], Recommendation]:
    return {(r.kind, r.step or r.target): r for r in recommendations}


async def test_a_generated_history_yields_the_recommendations_it_calls_for(learned) -> None:
    _, insights = learned
    deploy, = (p for p in insights.playbooks if p.playbook == "deploy")
    found = by_kind(deploy.recommendations)
    assert set(found) == {("timeout", "migrate"), ("do_not_retry", "fetch"), ("retry", "fetch"),
                          ("error_handler", "notify"), ("validator", "health")}

    timeout = found["timeout", "migrate"]
    assert timeout.suggestion == {"timeout_seconds": 6}
    assert timeout.message == ("step `migrate` has no timeout_seconds (no limit at all); its passing attempts take up "
                               "to 3 s (p99 of 300): set 6")
    assert (timeout.evidence.count, timeout.evidence.figures["p99_ms"]) == (300, 3000.0)

    never = found["do_not_retry", "fetch"]
    assert never.message == "step `fetch`: permanent (HTTP 404) never recovered in 300 tries: do not retry `permanent`"
    assert never.suggestion == {"retry": {"retry_on_errors": ["temporary"]}}
    assert never.evidence.confidence == round(300 / 310, 2)

    retry = found["retry", "fetch"]
    assert retry.suggestion == {"retry": {"max_attempts": 3, "retry_on_errors": ["temporary"], "base_delay": 1.0}}
    assert retry.evidence.count == DEPLOY_RUNS // 3 and retry.evidence.figures["recovered_at"] == {"3": 100}

    handler = found["error_handler", "notify"]
    assert handler.evidence.count == 20 and handler.suggestion["error_handlers"][0]["category"] == "authentication"
    assert found["validator", "health"].suggestion == {
        "validators": [{"type": "http_status", "url": "http://api.internal/health"}]}


async def test_it_learns_rates_durations_retries_and_failure_categories_per_step(learned) -> None:
    _, insights = learned
    deploy, = (p for p in insights.playbooks if p.playbook == "deploy")
    assert (deploy.runs, deploy.outcomes) == (300, {"completed": 180, "failed": 120})
    steps = {s.step: s for s in deploy.steps}
    fetch = steps["fetch"]
    assert (fetch.passed, fetch.gave_up, fetch.attempts) == (200, 100, 100 * 3 + 100 * 4 + 100)
    assert fetch.failures_by_category == {"temporary": 200, "permanent": 400}
    assert fetch.retries_after["temporary"].tries == 200 and fetch.retries_after["temporary"].worked == 100
    assert fetch.recovered_at_attempt == {3: 100} and fetch.target == "http://api.internal:80"
    assert steps["health"].first_attempt_rate == 1.0 and steps["health"].durations.max_ms == 59.0
    assert steps["notify"].failures_by_category == {"authentication": 20}


async def test_targets_that_fail_in_bursts_get_a_breaker_and_steps_that_fail_together_are_correlated(learned) -> None:
    _, insights = learned
    db, = (t for t in insights.targets if t.target == "http://db.internal:80")
    assert (db.bursts, db.largest_burst, db.failures) == (4, 6, 24)
    assert db.steps == ["nightly/backup", "report/query"]
    breaker, = db.recommendations
    assert breaker.kind == "circuit_breaker" and breaker.evidence.window_seconds == 60
    assert breaker.suggestion == {"circuit": {"key": "http://db.internal:80", "failure_threshold": 3}}
    assert "report/query call it without a circuit breaker" in breaker.message
    assert "in runs of 2 playbooks started by 2 people" in breaker.message
    assert (breaker.evidence.figures["playbooks"], breaker.evidence.figures["starters"]) == (2, 2)
    correlation, = insights.correlations
    assert (correlation.steps, correlation.together, correlation.targets) == (
        ["nightly/backup", "report/query"], 4, ["http://db.internal:80"])
    report = next(p for p in insights.playbooks if p.playbook == "report")
    assert by_kind(report.recommendations)["retry", "query"].suggestion == {
        "retry": {"max_attempts": 3, "base_delay": 1.0, "retry_on_errors": ["network"]}}


async def test_a_rebuild_and_a_restart_give_exactly_what_was_learned_incrementally(nc, learned, learning_config,
                                                                                   identity, admin_headers) -> None:
    service, incremental = learned
    client = LearningClient(nc, admin_headers)
    rebuilt = await client.rebuild()
    assert rebuilt.position == incremental.position and rebuilt.generation == "g2"
    assert await client.insights() == incremental
    await service.stop()
    again = LearningService(nc, EventStore(nc), learning_config, PlaybookStore(nc), identity.guard)
    await again.start()
    try:
        assert await client.insights(after=incremental.position) == incremental
        assert (await client.status()).generation == "g2"
    finally:
        await again.stop()


async def test_one_playbook_and_the_targets_its_steps_call(nc, learned, admin_headers) -> None:
    _, everything = learned
    report = await LearningClient(nc, admin_headers).insights("report")
    assert [p.playbook for p in report.playbooks] == ["report"]
    assert [t.target for t in report.targets] == ["http://db.internal:80"]
    assert [r.kind for r in recommendations_for(everything, "report")] == ["retry", "circuit_breaker"]
    assert (await LearningClient(nc, admin_headers).insights("nobody-ran-this")).playbooks == []


async def test_a_bad_request_is_answered_with_a_reason(nc, learned, admin_headers) -> None:
    msg = await nc.request("pb.learning.insights", b'{"playbook": 3}', timeout=5, headers=admin_headers)
    assert b'"code":"bad_request"' in msg.data
    with pytest.raises(LearningRefused, match="not yet") as refused:
        await LearningClient(nc, admin_headers).insights(after=10**9, wait=0.2)
    assert refused.value.code == "behind"


async def test_a_second_service_on_the_same_store_counts_nothing_twice(nc, learned, learning_config, identity,
                                                                       admin_headers) -> None:
    service, before = learned
    second = LearningService(nc, EventStore(nc), learning_config, PlaybookStore(nc), identity.guard)
    await second.start()
    try:
        store = EventStore(nc)
        last = await record(store, [deploy(i) for i in (1000, 1002, 1003)])
        await service.wait_for(last, 30)
        await second.wait_for(last, 30)
        await service.stop()
        after = await LearningClient(nc, admin_headers).insights("deploy", after=last)
    finally:
        await second.stop()
    deploy_before, = (p for p in before.playbooks if p.playbook == "deploy")
    assert after.playbooks[0].runs == deploy_before.runs + 3



async def test_nonsense_in_the_stream_is_skipped_and_learning_goes_on(nc, tmp_path, identity, admin_headers) -> None:
    store = EventStore(nc)
    await store.ensure_stream()
    await nc.jetstream().publish("pb.run.junk.StepSucceeded", b"{not json")
    await nc.jetstream().publish("pb.run.junk.StepSucceeded", b'{"type": "StepSucceeded", "run_id": 7}')
    last = await record(store, [deploy(0)])
    service = LearningService(nc, store, LearningConfig(directory=tmp_path / "learning"), PlaybookStore(nc),
                              identity.guard)
    await service.start()
    try:
        insights = await LearningClient(nc, admin_headers).insights(after=last, wait=30)
        assert (await LearningClient(nc, admin_headers).status()).lag == 0
    finally:
        await service.stop()
    assert [(p.playbook, p.runs) for p in insights.playbooks] == [("deploy", 1)]


async def test_a_store_that_cannot_be_opened_is_reported_and_retried_not_fatal(nc, tmp_path, identity,
                                                                              admin_headers) -> None:
    await EventStore(nc).ensure_stream()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    service = LearningService(nc, EventStore(nc), LearningConfig(directory=blocker / "learning"), PlaybookStore(nc),
                              identity.guard)
    await service.start()
    try:
        client = LearningClient(nc, admin_headers)
        status = await until(lambda: _errored(client), what="the learning service reporting its error")
        assert "not-a-directory" in status.error
        with pytest.raises(LearningRefused) as refused:
            await client.insights()
        assert refused.value.code == "not_ready"
    finally:
        await service.stop()


async def test_knowledge_of_a_stream_since_recreated_is_learned_again(nc, tmp_path, identity, admin_headers) -> None:
    config = LearningConfig(directory=tmp_path / "learning")
    store = EventStore(nc)
    await store.ensure_stream()
    first = await record(store, [deploy(i) for i in range(3)])
    service = LearningService(nc, store, config, PlaybookStore(nc), identity.guard)
    await service.start()
    await LearningClient(nc, admin_headers).insights(after=first, wait=30)
    await service.stop()
    await nc.jetstream().delete_stream(subjects.RUNS_STREAM)      # the NATS data was wiped
    await store.ensure_stream()
    last = await record(store, [deploy(7)])
    insights = await _learned_again_from_the_first_event(nc, store, config, identity, admin_headers, last)
    assert [(p.playbook, p.runs) for p in insights.playbooks] == [("deploy", 1)]


async def test_knowledge_an_earlier_interpretation_learned_is_learned_again(nc, tmp_path, identity, admin_headers,
                                                                             monkeypatch, caplog) -> None:
    """After an upgrade that reads events differently (a retried run is no longer counted failed), the knowledge the
    earlier version wrote is learned again from the first event, not continued where it stopped."""
    config = LearningConfig(directory=tmp_path / "learning")
    store = EventStore(nc)
    await store.ensure_stream()
    first = await record(store, [deploy(i) for i in range(3)])
    monkeypatch.setattr(learning_service, "_INTERPRETED", "interpretation 1")
    earlier = LearningService(nc, store, config, PlaybookStore(nc), identity.guard)
    await earlier.start()
    await LearningClient(nc, admin_headers).insights(after=first, wait=30)
    await earlier.stop()
    monkeypatch.undo()
    last = await record(store, [deploy(7)])
    insights = await _learned_again_from_the_first_event(nc, store, config, identity, admin_headers, last)
    assert [(p.playbook, p.runs) for p in insights.playbooks] == [("deploy", 4)]
    assert "an earlier version of the engine learned this knowledge" in caplog.text


async def _learned_again_from_the_first_event(nc, store, config, identity, admin_headers, last: int) -> Insights:
    """A learning service started on knowledge it must learn again: its insights once the new generation
    caught up, up to stream position `last`."""
    service = LearningService(nc, store, config, PlaybookStore(nc), identity.guard)
    await service.start()
    try:
        await until(lambda: _learned_again(LearningClient(nc, admin_headers)), timeout=30,
                    what="the second generation caught up")
        return await LearningClient(nc, admin_headers).insights(after=last)
    finally:
        await service.stop()


async def _errored(client: LearningClient) -> LearningStatus | None:
    status = await client.status()
    return status if status.error else None


async def _learned_again(client: LearningClient) -> bool:
    status = await client.status()
    return status.generation == "g2" and not status.lag


async def test_events_at_a_runs_pace_are_written_in_batches_not_one_transaction_each(
        nc, learning_config: LearningConfig, identity, admin_headers) -> None:
    store = EventStore(nc)
    await store.ensure_stream()
    service = LearningService(nc, store, learning_config, PlaybookStore(nc), identity.guard)
    await service.start()
    try:
        runs = [deploy(i) for i in range(6)]
        for run in runs:                          # one event at a time, each once the service has read the last
            last = 0
            for event in run.events:
                last = (await store.append(run.run_id, [event], last))[-1]
                await until(lambda seq=last: service.read >= seq, every=0.001, what="the event read")
        await LearningClient(nc, admin_headers).insights(after=last, wait=30)
        assert service.position == last
        events = sum(len(run.events) for run in runs)
        assert service.writes * 5 <= events, (service.writes, events)   # a commit per event costs the engine dear
    finally:
        await service.stop()


async def test_an_unreachable_store_is_said_at_once_not_after_the_asker_gives_up(
        nc, identity, admin_headers, tmp_path) -> None:
    """PostgreSQL down: each try to open the store waits out its connect timeout on the service's one store
    thread. An insights request queued behind it went unanswered until the asker gave up ('is `playbook up`
    running?'); it is told at once why there is no answer, and the status says it too."""
    store = EventStore(nc)
    await store.ensure_stream()
    down = f"postgresql://playbook@127.0.0.1:{free_port()}/playbook"
    config = LearningConfig(directory=tmp_path / "learning", postgres=postgres_settings(down))
    service = LearningService(nc, store, config, PlaybookStore(nc), identity.guard)
    await service.start()
    client = LearningClient(nc, admin_headers)
    try:
        await until(lambda: bool(service.error), timeout=60, what="the store failing to open")
        assert "connection" in (await client.status()).error
        # Asked over the next try to open it (a 1 s pause, then 10 s of connect timeout): answered at once each time.
        loop = asyncio.get_running_loop()
        ends = loop.time() + 12
        while loop.time() < ends:
            async with asyncio.timeout(2):
                with pytest.raises(LearningRefused, match="the knowledge store is not open .*connection") as refused:
                    await client.insights(wait=0)
            assert refused.value.code == "not_ready"
            await asyncio.sleep(0.5)                    # pacing the asks, not waiting for an outcome
    finally:
        await service.stop(grace=1)
