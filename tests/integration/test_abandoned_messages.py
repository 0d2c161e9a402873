"""A message a service gives up on never leaves its run silently stuck, against a real nats-server: the run's
safety net (the run service's `abandoned` consumer) fails the step or ends the run, once, and `playbook retry`
after the fix goes on. The bugs are simulated: a service's handler raises for one run (PLAYBOOK_MAX_DELIVER=1, so
the first failure is the last)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from events import subjects
from events.commands import PauseRun, ResumeRun, RetryRun, StartRun
from events.run import (
    ApprovalRequested, MessageAbandoned, RunCancelRequested, RunEvent, RunFailed, StepFailed, StepStarted,
)
from projections.run_view import run_view
from projections.sentences import sentence
from services.executor.service import Executor
from services.run.service import RunService
from services.errors import ConcurrencyConflict
from services.store import EventStore
from tests.helpers import playbook_yaml, running_engine, until, until_event, wait_for_end
from ui.client import EngineClient

pytestmark = pytest.mark.integration
RUN = "stuck"


class Bug:
    """A service's handler that raises on this run's events of these kinds, until fixed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, service: type, method: str, *kinds: str) -> None:
        self.on = True
        original = getattr(service, method)

        async def handler(this, msg, event: RunEvent, seq: int) -> None:
            if self.on and event.run_id == RUN and type(event).__name__ in kinds:
                raise KeyError("simulated bug")
            await original(this, msg, event, seq)
        monkeypatch.setattr(service, method, handler)


def shell(step_id: str, command: str, **extra) -> dict:
    return {"id": step_id, "action": "shell", "args": {"command": command}, "timeout_seconds": 60, **extra}


def kinds_of(events: list[RunEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


async def forge(nc, record: MessageAbandoned) -> int:
    """A record straight into the store, as a service that gave up writes it (the engine's login)."""
    store = EventStore(nc)
    while True:
        _, last = await store.load(record.run_id)
        try:
            [seq] = await store.append(record.run_id, [record], last)
            return seq
        except ConcurrencyConflict:
            continue        # the net appended meanwhile


def abandoned_at(run_id: str, consumer: str, kind: str, seq: int, step_id: str | None = None) -> MessageAbandoned:
    return MessageAbandoned(run_id=run_id, at=datetime.now(timezone.utc), consumer=consumer, seq=seq,
                            subject=subjects.run_event(run_id, kind), deliveries=10, error="KeyError: 'x'",
                            step_id=step_id)


async def net_done_with(engine: EngineClient, seq: int) -> None:
    """Until the safety net has acknowledged every record up to `seq`."""
    async def done() -> bool:
        info = await engine.nc.jetstream().consumer_info(subjects.RUNS_STREAM, "abandoned")
        return info.ack_floor.stream_seq >= seq and not info.num_ack_pending
    await until(done, what="the safety net done with the record")


async def waiting_at_its_gate(engine: EngineClient) -> int:
    """A run held at an approval gate (nothing runs); the sequence of its ApprovalRequested."""
    gate = {"approval_gate": {"message": "go?"}}
    reply = await engine.send(StartRun(run_id=RUN, playbook=playbook_yaml([shell("a", "true", **gate)])))
    assert reply.accepted, reply.error
    await until_event(engine, RUN, ApprovalRequested)
    return next(seq for seq, e in await engine.events(RUN) if isinstance(e, ApprovalRequested))


async def test_a_step_whose_start_the_executor_gave_up_on_fails_as_engine_not_retried_and_a_retry_after_the_fix_runs_it(
        settings, monkeypatch) -> None:
    bug = Bug(monkeypatch, Executor, "_on_scheduled", "StepScheduled")
    retry = {"max_attempts": 3, "base_delay": 0, "jitter": "none"}
    async with running_engine(replace(settings, max_deliver=1)) as engine:
        reply = await engine.send(StartRun(run_id=RUN, playbook=playbook_yaml([shell("a", "true", retry=retry)])))
        assert reply.accepted, reply.error
        events = await wait_for_end(engine, RUN)
        assert kinds_of(events) == ["RunStarted", "StepScheduled", "MessageAbandoned", "StepFailed", "RunFailed"]
        record, failed, ended = events[2:]
        assert isinstance(record, MessageAbandoned) and (record.consumer, record.step_id) == ("executor", "a")
        assert isinstance(failed, StepFailed) and failed.category == "engine"
        assert isinstance(ended, RunFailed) and ended.failed_steps == ["a"]
        view = run_view(await engine.run(RUN))
        assert view["status"] == "failed" and "executor failed on it 1 time: KeyError: 'simulated bug'" in \
            view["failure"]
        assert sentence(failed).startswith("failed (engine, not retried): the engine gave up on StepScheduled")

        bug.on = False       # the engine is fixed
        assert (await engine.send(RetryRun(run_id=RUN))).accepted
        again = await wait_for_end(engine, RUN, after_retry=True)
        assert kinds_of(again)[-1] == "RunCompleted"


async def test_an_outcome_the_executor_cannot_record_is_given_up_and_the_step_fails_as_engine(
        settings, monkeypatch) -> None:
    from services.domain.run.commands import FinishStep
    bug = {"on": True}
    decide = Executor._decide

    async def broken(self, run_id: str, command) -> list[RunEvent]:
        if bug["on"] and run_id == RUN and isinstance(command, FinishStep):
            raise KeyError("simulated bug")
        return await decide(self, run_id, command)
    monkeypatch.setattr(Executor, "_decide", broken)
    async with running_engine(replace(settings, max_deliver=2)) as engine:
        assert (await engine.send(StartRun(run_id=RUN, playbook=playbook_yaml([shell("a", "true")])))).accepted
        events = await wait_for_end(engine, RUN, timeout=15)
        assert kinds_of(events)[-4:] == ["StepStarted", "MessageAbandoned", "StepFailed", "RunFailed"]
        record, failed = events[-3], events[-2]
        assert isinstance(record, MessageAbandoned) and record.subject.endswith(".StepStarted")
        assert "its outcome (succeeded) could not be recorded: KeyError" in record.error
        assert isinstance(failed, StepFailed) and failed.category == "engine"

        bug["on"] = False
        assert (await engine.send(RetryRun(run_id=RUN))).accepted
        assert kinds_of(await wait_for_end(engine, RUN, after_retry=True))[-1] == "RunCompleted"


async def test_a_run_level_decision_given_up_stops_what_runs_as_a_cancel_and_ends_the_run_failed(
        settings, monkeypatch, tmp_path: Path) -> None:
    bug = Bug(monkeypatch, RunService, "_advance", "RunResumed")
    go = tmp_path / "go"
    async with running_engine(replace(settings, max_deliver=1)) as engine:
        long = shell("long", f"test -f {go} || sleep 60")
        assert (await engine.send(StartRun(run_id=RUN, playbook=playbook_yaml([long])))).accepted
        await until_event(engine, RUN, StepStarted)
        assert (await engine.send(PauseRun(run_id=RUN))).accepted
        assert (await engine.send(ResumeRun(run_id=RUN))).accepted     # the advancer's follow-up fails
        events = await wait_for_end(engine, RUN, timeout=20)
        stop = next(e for e in events if isinstance(e, RunCancelRequested))
        assert stop.fails and stop.actor == "system" and "the engine gave up on RunResumed" in stop.reason
        killed = next(e for e in events if isinstance(e, StepFailed))
        assert killed.category == "cancelled"
        ended = events[-1]
        assert isinstance(ended, RunFailed) and ended.reason == stop.reason
        view = run_view(await engine.run(RUN))
        assert view["stopped_by_engine"] and view["failure"] == stop.reason

        bug.on = False
        go.touch()
        assert (await engine.send(RetryRun(run_id=RUN))).accepted
        assert kinds_of(await wait_for_end(engine, RUN, after_retry=True))[-1] == "RunCompleted"


async def test_a_record_stored_before_the_net_reacted_is_reacted_to_when_the_engine_is_back(settings) -> None:
    async with running_engine(settings) as engine:
        gate_seq = await waiting_at_its_gate(engine)
    # The approval service gave up and recorded it, and the engine stopped before the net reacted.
    nc = await settings.connect("test-forger")
    try:
        await forge(nc, abandoned_at(RUN, "approval", "ApprovalRequested", gate_seq, "a"))
    finally:
        await nc.close()
    async with running_engine(settings) as engine:
        events = await wait_for_end(engine, RUN)
        assert kinds_of(events)[-3:] == ["MessageAbandoned", "RunCancelRequested", "RunFailed"]


async def test_two_replicas_of_the_net_and_two_records_react_once(settings) -> None:
    async with running_engine(settings) as engine, running_engine(settings, frozenset({"run"})):
        gate_seq = await waiting_at_its_gate(engine)
        record = abandoned_at(RUN, "approval", "ApprovalRequested", gate_seq, "a")
        await forge(engine.nc, record)
        last = await forge(engine.nc, record)       # the same give-up recorded twice
        await wait_for_end(engine, RUN)
        await net_done_with(engine, last)
        after = kinds_of([e for _, e in await engine.events(RUN)])
        assert after.count("RunCancelRequested") == 1 and after.count("RunFailed") == 1
        assert after[-1] == "RunFailed" or after[-2:] == ["RunFailed", "MessageAbandoned"]


async def test_a_record_of_a_run_that_ended_changes_nothing(settings) -> None:
    async with running_engine(settings) as engine:
        assert (await engine.send(StartRun(run_id=RUN, playbook=playbook_yaml([shell("a", "true")])))).accepted
        await wait_for_end(engine, RUN)
        first = [seq for seq, _ in await engine.events(RUN)]
        seq = await forge(engine.nc, abandoned_at(RUN, "advancer", "RunStarted", first[0]))
        await net_done_with(engine, seq)
        assert [s for s, _ in await engine.events(RUN)] == [*first, seq]


async def test_a_start_no_executor_ever_acknowledged_is_given_up_by_the_server_and_the_step_fails_as_engine(
        settings) -> None:
    """An executor that dies with the message each time (here: one that never answers) makes the server stop
    delivering it after max_deliver, with an advisory only; the run service records it, and the net reacts."""
    from nats.js.api import AckPolicy, ConsumerConfig
    nc = await settings.connect("test-dying-executor")
    try:
        async with running_engine(settings, frozenset({"identity", "run"})) as engine:
            await nc.jetstream().add_consumer(subjects.RUNS_STREAM, ConsumerConfig(
                durable_name="executor", deliver_subject="_pb.test.dying", ack_policy=AckPolicy.EXPLICIT,
                ack_wait=0.3, max_deliver=2, filter_subject=subjects.events_of_type("StepScheduled")))
            await nc.subscribe("_pb.test.dying")        # takes each delivery, and never answers
            assert (await engine.send(StartRun(run_id=RUN, playbook=playbook_yaml([shell("a", "true")])))).accepted
            events = await wait_for_end(engine, RUN, timeout=15)
            record = next(e for e in events if isinstance(e, MessageAbandoned))
            assert (record.consumer, record.step_id, record.attempt, record.deliveries) == ("executor", "a", 1, 2)
            assert record.error.startswith("never acknowledged")
            failed = next(e for e in events if isinstance(e, StepFailed))
            assert failed.category == "engine" and isinstance(events[-1], RunFailed)
    finally:
        await nc.close()
