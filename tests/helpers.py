"""What tests share: times, playbook builders, decider scenarios, the engine in-process, and waiting.

Waiting is done two ways only: for the engine's own events (`wait_for_end`, `read_until`
on an SSE stream), and with `until` for what no event tells (a port, a file, a timer).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import aiohttp
import msgspec
import nats
import yaml
from aiohttp import web

from app.root import ALL_SERVICES, serve
from events import subjects
from events.identity import AccessRefused, Grant, decode_access_refused
from events.run import ENDINGS, REOPENING_EVENTS, TERMINAL_EVENTS, RunEvent, RunStarted
from services.directory import Directory
from services.identity.authority import parse_grant
from services.identity.bootstrap import ensure_local_admin
from services.identity.credentials import TOKEN_FILE, read_secret
from services.identity.setup import Identity
from services.domain.run import decider, state
from services.domain.run.commands import Advance, BeginStep, FinishStep
from services.domain.run.decider import decide
from services.domain.run.readiness import settled
from services.domain.run.state import Run
from services.playbook import load_playbook
from services.settings import Settings, connect_options
from ui.client import EngineClient
from ui.identity_client import IdentityClient
from ui.sse_reader import sse_messages
from ui.web.app import WebServer, start_web

# -- times and builders ------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def playbook_yaml(steps: list[dict[str, Any]], **top: Any) -> str:
    return yaml.safe_dump({"name": top.pop("name", "test"), **top, "steps": steps}, sort_keys=False)


def started(run_id: str, steps: list[dict[str, Any]], *, values: dict | None = None,
            environment: str | None = None, actor: str = "alice", dry_run: bool = False, **top: Any) -> RunStarted:
    """`RunStarted` of a playbook with these steps; `values` are the parameter values given."""
    loaded = load_playbook(playbook_yaml(steps, **top), "test.yaml", parameters=values or {},
                           environment=environment)
    return RunStarted(run_id=run_id, at=T0, actor=actor, playbook=loaded.playbook, plan=loaded.plan,
                      parameters=loaded.parameters, environment=loaded.environment, variables=loaded.variables,
                      dry_run=dry_run)


def failing_until(name: str, tries: Path, *after: dict[str, Any]) -> str:
    """A playbook whose shell step `call` fails ("connection refused") until it has been tried `fail_until` times
    (a parameter, 9 by default), counting its tries in the file `tries`; two attempts a run; then `after`."""
    check = f"echo x >> {tries}; [ $(wc -l < {tries}) -ge ${{fail_until}} ]"
    call = {"id": "call", "action": "shell", "timeout_seconds": 10,
            "args": {"command": f"{check} || {{ echo 'connection refused' >&2; exit 1; }}"},
            "retry": {"max_attempts": 2, "base_delay": 0, "jitter": "none"}}
    return playbook_yaml([call, *after], name=name,
                         parameters=[{"name": "fail_until", "type": "integer", "default": 9}])


def noop(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "action": "noop", **extra}


def as_dict(event: msgspec.Struct) -> dict[str, Any]:
    return msgspec.to_builtins(event)


def kinds(events: list[RunEvent]) -> list[str]:
    """`Type:step` of each event, as scenarios compare them."""
    return [f"{type(e).__name__}:{getattr(e, 'step_id', '')}".rstrip(":") for e in events]


# -- decider scenarios -------------------------------------------------------------------------

R = "run1"


def check_invariants(run: Run, after: str = "") -> None:
    """What must hold after every event, in every decider test: the decider's indexes match the steps."""
    if not run.exists:
        return
    assert run.gates_waiting == sum(s.gate.status == "requested" for s in run.steps.values()), after
    needs = run.plan.needs
    assert run.waiting == {s: sum(not settled(run, run.steps[n]) for n in needs.get(s, ())) for s in run.steps}, after
    assert run.ready == {s.id for s in run.steps.values() if s.status == "pending" and not run.waiting[s.id]}, after
    assert run.unsettled == sum(not settled(run, s) for s in run.steps.values()), after
    assert run.running == sum(s.status == "running" for s in run.steps.values()), after
    assert run.retrying == sum(bool(s.retry.status) for s in run.steps.values()), after


def check_ending(run: Run, event: RunEvent, was_finished: bool) -> None:
    """The terminal-event contract, after every event: each ending writes exactly one terminal event, which
    leaves the run in the status it names; only a reopening event makes a finished run go on."""
    name = type(event).__name__
    if isinstance(event, TERMINAL_EVENTS):
        assert not was_finished, f"{name} ended run {run.id} that had already ended ({run.status})"
        assert run.status == ENDINGS[type(event)] and run.finished, f"{name} left the run {run.status}"
    elif was_finished:
        assert run.finished == (not isinstance(event, REOPENING_EVENTS)), f"{name} after the end: {run.status}"


def _checked_evolve(run: Run, event: RunEvent, seq: int = 0) -> Run:
    was_finished, quarantined = run.finished, len(run.quarantined)
    state.evolve(run, event, seq)
    check_invariants(run, f"after {type(event).__name__}")
    if len(run.quarantined) == quarantined:        # a quarantined event changed nothing: no ending to check
        check_ending(run, event, was_finished)
    return run


class Scenario:
    """A run built from events, with the sequence numbers the store would give them.

    Given events, when a command, then the events decided; the invariants are checked
    after every event, those the decider folds ahead inside a decision included.
    """

    def __init__(self, *events: RunEvent) -> None:
        self.run = Run(id=R)
        self.seq = 0
        self.events: list[RunEvent] = []   # every event so far, as the stream would hold them
        self.given(*events)

    def given(self, *events: RunEvent) -> Scenario:
        for event in events:
            self.events.append(event)
            self.seq += 1
            _checked_evolve(self.run, event, self.seq)
        return self

    def when(self, command: Any, t: float = 10) -> list[RunEvent]:
        before = msgspec.json.encode(self.run)
        with mock.patch.object(decider, "evolve", _checked_evolve):
            events = decide(self.run, command, at(t))
        assert msgspec.json.encode(self.run) == before, "deciding changed the run it decided on"
        self.given(*events)
        return events

    def start(self) -> list[RunEvent]:
        return self.when(Advance())

    def begin(self, step_id: str, executor: str = "ex1") -> list[RunEvent]:
        attempt = self.run.steps[step_id].attempt
        return self.when(BeginStep(step_id=step_id, attempt=attempt.number, scheduled_seq=attempt.scheduled_seq,
                                   executor=executor))

    def succeed(self, step_id: str, **outputs: Any) -> list[RunEvent]:
        return self.when(FinishStep(step_id=step_id, attempt=self.run.steps[step_id].attempt.number,
                                    outputs=outputs, duration_ms=1.0))

    def fail(self, step_id: str, error: str = "boom", category: str = "unknown") -> list[RunEvent]:
        return self.when(FinishStep(step_id=step_id, attempt=self.run.steps[step_id].attempt.number,
                                    outputs={}, duration_ms=1.0, error=error, category=category))

    def run_step(self, step_id: str, **outputs: Any) -> list[RunEvent]:
        self.begin(step_id)
        return self.succeed(step_id, **outputs)

    def begin_rollback(self, step_id: str) -> list[RunEvent]:
        rollback = self.run.steps[step_id].rollback
        return self.when(BeginStep(step_id=step_id, attempt=rollback.attempt, scheduled_seq=rollback.scheduled_seq,
                                   executor="ex1", rollback=True))

    def finish_rollback(self, step_id: str, error: str = "", category: str = "unknown") -> list[RunEvent]:
        return self.when(FinishStep(step_id=step_id, attempt=self.run.steps[step_id].rollback.attempt, outputs=[{}],
                                    duration_ms=1.0, error=error, category=category, rollback=True))


# -- the engine, in this process ---------------------------------------------------------------

@contextlib.asynccontextmanager
async def running_engine(settings: Settings, services: frozenset[str] = ALL_SERVICES) -> AsyncIterator[EngineClient]:
    """Every service (or those named) running in this process until the block ends, and a client to drive them as
    the local admin (the token the identity service wrote to the home, as `playbook up` does)."""
    stop, ready = asyncio.Event(), asyncio.Event()

    async def on_ready(_running: Any) -> None:
        ready.set()

    task = asyncio.create_task(serve(settings, services, ready=on_ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 10)
    client_nc = await nats.connect(**connect_options(settings.engine_url()), max_reconnect_attempts=-1,
                                   reconnect_time_wait=0.2)
    try:
        yield EngineClient(client_nc, read_secret(settings.home, TOKEN_FILE))
    finally:
        await client_nc.close()
        stop.set()
        await asyncio.wait_for(task, 15)


async def person(engine: EngineClient, name: str, *grants: str, agent: bool = False) -> EngineClient:
    """A client that acts as `name`, with a token the admin issued it: these grants (`operator`,
    `approver:deploy-*@staging`, ...), by default operator and approver everywhere."""
    chosen = [parse_grant(g) for g in grants] or [Grant(role="operator"), Grant(role="approver")]
    assert engine.caller.credential is not None
    _, credential = await IdentityClient(engine.nc, engine.caller.credential).create(
        f"{name}'s token", name, chosen, kind="agent" if agent else "person")
    return EngineClient(engine.nc, credential)


async def local_admin(settings: Settings) -> str:
    """The local admin's token, made as the identity service makes it (for tests that run no engine)."""
    nc = await settings.connect("test-local-admin")
    identity = await Identity.start(nc, lambda _name: [])
    try:
        admin = await ensure_local_admin(settings.home, identity.store, identity.registry, name="admin",
                                         now=datetime.now(timezone.utc))
        return admin.credential
    finally:
        await identity.stop()
        await nc.close()


async def refusals(nc: nats.NATS) -> list[AccessRefused]:
    """Every refusal recorded so far in PB_ACCESS, oldest first (the recording is awaited before a refusal is
    answered, so a test may read it as soon as it has the answer)."""
    js = nc.jetstream()
    if not (await js.stream_info(subjects.ACCESS_STREAM)).state.messages:
        return []
    sub = await js.subscribe(subjects.REFUSAL_SUBJECTS, stream=subjects.ACCESS_STREAM, ordered_consumer=True)
    found = []
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            found.append(decode_access_refused(msg.data))
            if not msg.metadata.num_pending:
                return found
    finally:
        await sub.unsubscribe()


@contextlib.asynccontextmanager
async def web_replica(settings: Settings) -> AsyncIterator[WebServer]:
    """A web server as `python -m ui.web` runs one: its own connections, its own token registry, which writes no
    token (the identity service records uses and opens sessions at its request), as the web's login, pb-web."""
    nc = await settings.connect("test-web-identity", "web")
    identity = await Identity.start(nc, Directory(settings.directory_path).groups_of, writes_tokens=False)
    server = await start_web(settings, identity, "web")
    try:
        yield server
    finally:
        await server.close()
        await identity.stop()
        await nc.close()


async def wait_for_end(client: EngineClient, run_id: str, timeout: float = 30.0, **since: bool) -> list[RunEvent]:
    """Follow the run until its terminal event; returns every event, in order. `since`: as `follow`
    takes it (`after_retry=True`: from the latest retry to the end that follows it)."""
    async def collect() -> list[RunEvent]:
        return [event async for _, event in client.follow(run_id, **since)]
    return await asyncio.wait_for(collect(), timeout)


E = TypeVar("E", bound=RunEvent)


async def until_event(client: EngineClient, run_id: str, kind: type[E], timeout: float = 15.0) -> E:
    """The run's first event of this kind, stored already or still to come."""
    async def first() -> E:
        async for _, event in client.follow(run_id):
            if isinstance(event, kind):
                return event
        raise AssertionError(f"run {run_id} ended without {kind.__name__}")
    return await asyncio.wait_for(first(), timeout)


async def until_timer_armed(engine: EngineClient, timeout: float = 10.0) -> None:
    """Until some service has stored a durable timer (a message schedule) in the stream."""
    js = engine.nc.jetstream()

    async def armed() -> bool:
        info = await js.stream_info(subjects.RUNS_STREAM, subjects_filter=subjects.TIMER_SUBJECTS)
        return bool(info.state.subjects)
    await until(armed, timeout=timeout, what="a durable timer armed")


@contextlib.asynccontextmanager
async def local_http(routes: list[web.RouteDef]) -> AsyncIterator[str]:
    """An aiohttp server on a free loopback port serving `routes`; yields its base URL."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


# -- waiting -------------------------------------------------------------------------------------

async def until(condition: Callable[[], Any | Awaitable[Any]], *, timeout: float = 10.0,
                what: str = "the condition", every: float = 0.02) -> Any:
    """Poll what no event tells us (a port, a file, the stream's timers) until it holds; its value.

    `condition` may be async; a blocking check goes through `asyncio.to_thread` inside it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        await asyncio.sleep(every)


class BesideTheLoop:
    """Stands in for a blocking check (`module.name`): once begun, it waits on its worker thread until the event
    loop has run meanwhile, which it can only if the check was not run on the loop."""

    def __init__(self, monkeypatch: Any, module: Any, name: str) -> None:
        self.loop_ran, self.checked, self.waited = threading.Event(), threading.Event(), list[bool]()
        real = getattr(module, name)

        def slow(*args: Any, **kwargs: Any) -> Any:
            self.checked.set()
            self.waited.append(self.loop_ran.wait(10))          # the loop sets it, if it is free to
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, slow)

    async def let_the_loop_run(self) -> None:
        await until(self.checked.is_set, what="the check begun")
        self.loop_ran.set()


@dataclass(frozen=True)
class Message:
    """One SSE message, its data decoded as JSON."""

    event: str
    id: str | None
    data: Any


async def messages(response: aiohttp.ClientResponse) -> AsyncIterator[Message]:
    async for event, ident, data in sse_messages(response):
        yield Message(event, ident, json.loads(data))


async def read_until(response: aiohttp.ClientResponse, done: Callable[[Message, list[Message]], bool],
                     timeout: float = 20) -> list[Message]:
    """The stream's messages up to the one `done(message, seen so far)` accepts."""
    seen: list[Message] = []

    async def collect() -> None:
        async for message in messages(response):
            seen.append(message)
            if done(message, seen):
                return
        raise AssertionError(f"the stream ended before the awaited message; it sent {seen}")
    await asyncio.wait_for(collect(), timeout)
    return seen
