"""The composition root: which services and doors exist, and how each is built from the settings.

Adding a service is one line in SERVICES, adding a door (an interface people or agents
use) one line in DOORS. Process edges call `main` with the ones they run:
`python -m services.run` the run service, `python -m ui.web` the web door, and
`playbook up` everything (app/up.py). Each process builds its identity once (the token
registry following PB_IDENTITY, the directory, the guard) and hands the guard to every
service and door that answers callers.
"""
from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

import nats.errors
from nats.aio.client import Client as NATS

from events import subjects
from events.json_limits import build_decoders
from services.aggregates import BreakerRepository, RunRepository, breaker_repository, run_repository
from services.approval.service import ApprovalService
from services.catalog import Catalog
from services.directory import Directory
from services.errors import EngineUnavailable
from services.executor.leftovers import sweep, this_process
from services.executor.processes import ProcessRules
from services.executor.remediation import Remediation
from services.executor.service import Executor
from services.identity.credentials import NatsRole
from services.identity.nats_users import user_name
from services.identity.service import IdentityService
from services.identity.setup import Identity
from services.learning.config import LearningConfig
from services.learning.service import LearningService
from services.leases import LEASE_STREAM, LeaseStore
from services.log_text import EscapedLines
from services.logs import ensure_logs_stream
from services.playbook_store import PlaybookStore
from services.readiness import wait_for_advancer, wait_for_streams
from services.resilience.service import ResilienceService
from services.run.service import STEP_OUTCOMES, RunService
from services.settings import Settings, connect_options
from services.store import EventStore
from services.stream_sizes import decide_sizes

log = logging.getLogger("playbook")
T = TypeVar("T")


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self, grace: float = 10.0) -> None: ...


class Door(Protocol):
    @property
    def url(self) -> str: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Parts:
    """What services are built from: one connection, one store, one repository per aggregate, the catalog
    (and the playbooks it and every run pin, resolved through one cache), one identity."""

    nc: NATS
    store: EventStore
    runs: RunRepository
    breakers: BreakerRepository
    catalog: Catalog
    settings: Settings
    identity: Identity | None       # None for a service under a login of its own, which answers no caller
    here: frozenset[str] = frozenset()   # the services of this process

    @property
    def guarded(self) -> Identity:
        assert self.identity is not None, "a service that answers callers runs under the engine's login"
        return self.identity


SERVICES: dict[str, Callable[[Parts], Service]] = {
    # Executors elsewhere (under pb-executor) record their steps' outcomes only: the advancer follows them there.
    "run": lambda p: RunService(p.nc, p.runs, p.breakers, p.catalog, p.settings, p.guarded.guard,
                                advances_steps="executor" not in p.here),
    "executor": lambda p: Executor(p.nc, p.runs, p.breakers, p.settings, own_login=p.identity is None),
    "approval": lambda p: ApprovalService(p.nc, p.runs, p.settings),
    "resilience": lambda p: ResilienceService(p.nc, p.runs, p.settings, Remediation(
        p.settings.secrets, ProcessRules.from_environ(p.settings.environ))),
    "learning": lambda p: LearningService(p.nc, p.store, LearningConfig.from_env(p.settings.environ, p.settings.home),
                                          p.catalog.playbooks, p.guarded.guard),
    "identity": lambda p: IdentityService(p.nc, p.guarded.store, p.guarded.registry, p.guarded.guard,
                                          sessions=p.guarded.sessions, home=p.settings.home,
                                          admin_name=p.settings.user),
}
# Services that, alone in a process (`python -m services.<name>`), log in as their own NATS user: what it may
# write is what the service writes, and it makes no stream (it waits for those it uses). Together with others
# (`playbook up`), a service uses the engine's login.
OWN_LOGINS: dict[str, NatsRole] = {"executor": "executor"}
# The streams each of those uses: made by the engine's services (`python -m services.run`, say), waited for.
OWN_STREAMS: dict[str, tuple[str, ...]] = {
    "executor": (subjects.RUNS_STREAM, subjects.LOGS_STREAM, LEASE_STREAM,
                 subjects.object_stream(subjects.PLAYBOOKS_BUCKET)),
}
# Where each door's opener lives, loaded only by the processes that open it.
DOORS: dict[str, str] = {
    "web": "ui.web.app:start_web",
    "mcp": "ui.mcp.door:start_mcp",
}
ALL_SERVICES = frozenset(SERVICES)


@dataclass(slots=True)
class Running:
    """What is up once `serve` is ready: the services' connection, its identity and the open doors."""

    nc: NATS
    identity: Identity | None       # None in a process of one service under its own login
    doors: dict[str, Door] = field(default_factory=dict)


async def serve(settings: Settings, services: Iterable[str] = ALL_SERVICES, doors: Iterable[str] = (), *,
                ready: Callable[[Running], Awaitable[None]] | None = None, stop: asyncio.Event | None = None) -> None:
    """Run services and doors until SIGINT/SIGTERM (or `stop` is set), then close, drain and stop.

    The services' connection closes for good only when the server refuses what it was sent (nats-py does not
    reconnect after a protocol error). The process then stops with EngineUnavailable, not served by nothing
    while it looks alive: whoever started it starts it again."""
    stop = stop or asyncio.Event()
    closed = asyncio.Event()

    async def on_closed() -> None:
        if not stop.is_set():
            closed.set()
            stop.set()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    which = sorted(services)
    build_decoders()     # now, not on the loop when the first run's events come
    directory = Directory(settings.directory_path)
    directory.check()
    if "executor" in which:     # what a dead engine left on this machine is killed now, once, not after the waits
        await asyncio.to_thread(sweep, this_process())      # for NATS and streams (an executor alone waits for both)
    forbidden: asyncio.Future[str] = loop.create_future()
    login = login_of(which, settings.nats_url)
    nc = await _unless_stopped(settings.connect(f"playbook-{'+'.join(which) or 'doors'}", login, on_closed=on_closed,
                                                on_forbidden=lambda said: _first(forbidden, said)), stop)
    if nc is None:
        log.info("stopped before NATS answered")
        return
    identity: Identity | None
    if login not in ("engine", "web"):
        own = await _unless_stopped(_unless_forbidden(_found_for(nc, settings, which), forbidden, nc,
                                                      _own_login(login)), stop)
        if own is None:
            await nc.close()
            log.info("stopped before the engine's streams were there")
            return
        identity, started = None, [SERVICES[name](own) for name in which]
    elif which:
        parts = await _unless_forbidden(_set_up(nc, settings, directory, frozenset(which)), forbidden, nc,
                                        ENGINE_LOGIN)
        settings, identity = parts.settings, parts.identity
        started = [SERVICES[name](parts) for name in which]
    else:
        found = await _unless_stopped(_unless_forbidden(_found(nc, directory), forbidden, nc, WEB_LOGIN), stop)
        if found is None:
            await nc.close()
            log.info("stopped before the engine's streams were there")
            return
        identity, started = found, []
    running = Running(nc, identity)
    try:
        for service in started:
            await service.start()
        for name in doors:
            assert identity is not None, "doors open beside the engine's services or alone"
            running.doors[name] = door = await _opener(name)(settings, identity, login)
            log.info("%s on %s", name, door.url)
        log.info("ready: %s", ", ".join([*which, *running.doors]))
        if ready is not None:
            await ready(running)
        await stop.wait()
    finally:
        log.info("stopping: %s", ", ".join([*which, *running.doors]))
        for door in reversed(running.doors.values()):
            await door.close()
        for service in reversed(started):
            await _stopped(service.stop(), nc)
        if identity is not None:
            await _stopped(identity.stop(), nc)
        if not nc.is_closed:
            await nc.drain()
    if closed.is_set():
        raise EngineUnavailable(f"the connection to NATS was closed ({nc.last_error or 'by the server'}); "
                                "the engine's services stopped: start them again")


# Who needs the login's rights, and which login that is.
ENGINE_LOGIN = ("the engine", "the engine's services log in as pb-engine (NATS_URL)")
WEB_LOGIN = ("the web server", "a web server alone (`python -m ui.web`) logs in as pb-web (NATS_URL, or "
             "$PLAYBOOK_HOME/credentials/nats-web.json)")


def login_of(services: Sequence[str], url: str | None = None) -> NatsRole:
    """Doors alone (`python -m ui.web`, which faces HTTP) log in as the web server; a service with a login of its
    own, alone in its process, as itself, unless `url` (NATS_URL) names the engine's (it then does what it does in
    the engine: an executor beside `playbook up`, whose run service advances only after its own executor);
    anything else as the engine."""
    if not services:
        return "web"
    if len(services) == 1 and services[0] in OWN_LOGINS:
        named = connect_options(url).get("user") if url else None
        return "engine" if named == user_name("engine") else OWN_LOGINS[services[0]]
    return "engine"


def _own_login(role: NatsRole) -> tuple[str, str]:
    return (f"the {role} service", f"`python -m services.{role}` logs in as pb-{role} (NATS_URL, or "
            f"$PLAYBOOK_HOME/credentials/nats-{role}.json)")


async def _set_up(nc: NATS, settings: Settings, directory: Directory, here: frozenset[str] = frozenset()) -> Parts:
    """The streams, the catalog and the identity, made or found."""
    sized = await decide_sizes(nc, settings)
    store = EventStore(nc)
    await store.ensure_stream(sized.stream_replicas)
    await ensure_logs_stream(nc, sized.stream_replicas, sized.logs_max_bytes)
    await LeaseStore(nc).ensure_stream(sized.stream_replicas)    # the executors', which under pb-executor make none
    playbooks = PlaybookStore(nc)
    catalog = Catalog(nc, playbooks)
    await catalog.ensure(sized.stream_replicas, sized.uploads_max_bytes)
    identity = await Identity.start(nc, directory.groups_of, replicas=sized.stream_replicas,
                                    refusals_max_bytes=sized.access_max_bytes)
    return Parts(nc, store, run_repository(store, playbooks), breaker_repository(store), catalog, sized, identity,
                 here)


async def _found_for(nc: NATS, settings: Settings, services: Sequence[str]) -> Parts:
    """For a service under its own login: the streams it uses, waited for (said while missing), made by none of
    it; no identity (it answers no caller)."""
    await wait_for_streams(nc, tuple(dict.fromkeys(s for name in services for s in OWN_STREAMS[name])),
                           maker="the engine's services (`python -m services.run`, compose's run service)")
    if "executor" in services:      # it advances no run: one that nothing advances after would stop at every step
        await wait_for_advancer(nc, tuple(subjects.events_of_type(name) for name in STEP_OUTCOMES))
    store = EventStore(nc)
    playbooks = PlaybookStore(nc)
    return Parts(nc, store, run_repository(store, playbooks), breaker_repository(store), Catalog(nc, playbooks),
                 settings, None, frozenset(services))


async def _found(nc: NATS, directory: Directory) -> Identity:
    """For doors alone: the engine's streams, waited for (said while missing), and the identity, which writes no
    token (the identity service records uses and opens sessions at its request)."""
    await wait_for_streams(nc)
    return await Identity.start(nc, directory.groups_of, writes_tokens=False)


async def _unless_forbidden(setting_up: Coroutine[Any, Any, T], forbidden: asyncio.Future[str], nc: NATS,
                            login: tuple[str, str]) -> T:
    """What `setting_up` gives. A login NATS does not let make or read what it needs (a client's, say) stops the
    process at once with the server's words, not after 20 s of "did not answer"."""
    making = asyncio.ensure_future(setting_up)
    try:
        await asyncio.wait((making, forbidden), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        making.cancel()
        raise
    if making.done():
        return making.result()
    making.cancel()
    await asyncio.wait((making,))
    await nc.close()
    raise EngineUnavailable(f"NATS does not let this login do what {login[0]} needs ({forbidden.result()}): "
                            f"{login[1]}")


def _first(future: asyncio.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)


async def _unless_stopped(connecting: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """What `connecting` gives, or None once `stop` is set first: a service waiting for a NATS that is not there
    yet still stops when told (`docker stop`), instead of waiting to be killed."""
    task = asyncio.ensure_future(connecting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))
    return None if task.cancelled() else task.result()


async def _stopped(stopping: Awaitable[None], nc: NATS) -> None:
    """A stop that meets the connection closed has nothing left to say to the server."""
    try:
        await stopping
    except nats.errors.ConnectionClosedError:
        if not nc.is_closed:
            raise


def _opener(door: str) -> Callable[[Settings, Identity, NatsRole], Awaitable[Door]]:
    module, _, function = DOORS[door].partition(":")
    opener: Callable[[Settings, Identity, NatsRole], Awaitable[Door]] = getattr(importlib.import_module(module),
                                                                                function)
    return opener


def configure_logging(settings: Settings, as_json: bool = False) -> None:
    """Log lines to stderr at `$PLAYBOOK_LOG`; with `as_json`, one JSON object a line. User text in a line is
    escaped (services/log_text.py): no one forges a line."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if as_json:
            handler.setFormatter(JsonLines())
        if not any(isinstance(f, EscapedLines) for f in handler.filters):
            handler.addFilter(EscapedLines())


class JsonLines(logging.Formatter):
    """`{"at", "level", "logger", "message"}` per record, for log collectors and scripts."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"at": datetime.fromtimestamp(record.created, timezone.utc).isoformat(), "level": record.levelname,
                "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line)


def main(services: Iterable[str] = ALL_SERVICES, doors: Iterable[str] = ()) -> None:
    """A process edge: the settings from this process's environment, then serve."""
    settings = Settings.from_environ(os.environ)
    configure_logging(settings)
    try:
        run_engine(serve(settings, services, doors))
    except EngineUnavailable as err:    # NATS refused the login or closed the connection: say why, exit 4
        log.error("%s", err)
        raise SystemExit(4) from None



SWITCH_INTERVAL = 0.0005  # seconds a thread holds the GIL while another waits for it (Python's default: 0.005)
# Allocations before the cycle collector looks at young objects (Python's default: 700), and its passes before it
# looks at older ones (10, 10): a full pass holds the GIL over every object the process keeps.
COLLECTOR_THRESHOLDS = (50_000, 20, 20)


def run_engine(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` for an engine process. Python 3.11 waits for each step process on a thread of its own;
    here, as 3.12 does by default, on a pidfd in the event loop (about 1 ms less per shell step).

    Heavy work runs on threads (checking a playbook of 10,000 steps takes a second): the event loop takes the
    GIL back after SWITCH_INTERVAL instead of 5 ms, so a command that needs a dozen turns of the loop meanwhile
    is answered in milliseconds, not in a dozen times 5 ms.

    The cycle collector stops every thread while it runs. Starting a run of 10,000 steps, its full passes over
    a few hundred thousand live objects (finding no garbage) took 60-300 ms each: what start-up made is frozen
    (never scanned again, it lives as long as the process), and passes come less often."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    if sys.version_info >= (3, 12) or not _pidfd_works():
        return asyncio.run(main)
    with asyncio.Runner() as runner:
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(runner.get_loop())
        asyncio.set_child_watcher(watcher)
        return runner.run(main)


def _pidfd_works() -> bool:
    """Linux 5.3 and later (as 3.12 checks before it uses one)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True
