"""`playbook up`: the whole engine on one machine, ready in seconds, secured by default.

The embedded nats-server starts with generated users (the engine's, the CLI's, a read-only
agent's; passwords in `$PLAYBOOK_HOME/credentials`), the identity service makes sure the
local admin has a token there (the CLI's credential), and a one-time sign-in link opens
the dashboard signed in. Nothing to configure: still two commands from a clone. With
`--cluster 3`, three servers on this machine form one JetStream cluster with the same users,
the streams at three replicas. Every service runs in this process but the learning service,
which runs in one of its own (app/service_process.py), started and stopped with `up`.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from app.cluster import local_cluster
from app.root import ALL_SERVICES, DOORS, Running, configure_logging, run_engine, serve
from app.service_process import ServiceProcess, child_environment
from events.commands import StartRun
from services.embedded import EmbeddedCluster, EmbeddedNats, jetstream_storage
from services.errors import PlaybookError
from services.identity.credentials import TOKEN_FILE, read_secret
from services.identity.nats_users import ensure_nats_users
from services.owners import owner_of, user_name
from services.settings import CLUSTER_LEASE_SECONDS, Settings
from services.stream_sizes import decide_sizes
from ui.cli.render import Follower
from ui.client import EngineClient
from ui.web.app import WebServer

log = logging.getLogger("playbook")

DEMO_PLAYBOOK = "deploy-demo"     # examples/deploy-demo.yaml, in the catalog since the run service started
LEARNING_READY_SECONDS = 30.0     # `up` is ready once the learning service (a process of its own) serves too


def up(settings: Settings, *, demo: bool, http_port: int, as_json: bool = False, cluster: int = 0) -> int:
    configure_logging(settings, as_json)
    if cluster and settings.nats_url:
        raise PlaybookError("--cluster starts its own NATS servers: unset NATS_URL, or drop --cluster to use that one")
    with only_up_in(settings.home):
        return run_engine(_up(settings, demo=demo, http_port=http_port, as_json=as_json, cluster=cluster))


@contextlib.contextmanager
def only_up_in(home: Path) -> Iterator[None]:
    """One `up` to a home: a second would start another nats-server on the same store, which damages it, and
    when it stopped it would take away the first one's URL file. The lock goes with the process, however it ends."""
    try:
        _private(home)
        with_access = os.access(home, os.R_OK | os.W_OK | os.X_OK)
    except PermissionError:
        with_access = False
    if not with_access:    # another user's (`sudo playbook up` in this checkout), private to them
        raise PlaybookError(f"{home} cannot be used as {user_name(os.geteuid())}: {owner_of(home)}; run `playbook "
                            "up` as that user, or give this one a PLAYBOOK_HOME of your own")
    with open(home / "up.pid", "a+") as held:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.seek(0)
            raise PlaybookError(f"an engine already runs from {home} (`playbook up`, process "
                                f"{held.read().strip() or 'unknown'}): use it, stop it first, or give this one another "
                                "PLAYBOOK_HOME") from None
        held.truncate(0)
        held.write(f"{os.getpid()}\n")
        held.flush()
        yield


async def _up(settings: Settings, *, demo: bool, http_port: int, as_json: bool, cluster: int) -> int:
    embedded: EmbeddedNats | EmbeddedCluster | None = None
    if cluster:
        embedded = local_cluster(settings.home, cluster, settings.nats_port, settings.nats_server_bin,
                                 settings.nats_max_store)
        # Plain URLs: each connection logs in as its role from `credentials/`, as on one server.
        settings = replace(settings, nats_url=await embedded.start(), stream_replicas=max(settings.stream_replicas, 3),
                           lease_seconds=max(settings.lease_seconds, CLUSTER_LEASE_SECONDS))
        log.info("embedded JetStream cluster of %d servers on %s, stores in %s; streams at %d replicas", cluster,
                 settings.nats_url, settings.home / "cluster", settings.stream_replicas)
        settings = await _sized(settings, jetstream_storage(settings.home / "cluster", settings.nats_max_store))
    elif not settings.nats_url:
        embedded = EmbeddedNats(settings.home, settings.nats_port, settings.nats_server_bin,
                                config=ensure_nats_users(settings.home, settings.nats_max_store))
        settings = replace(settings, nats_url=await embedded.start())
        log.info("embedded nats-server on %s, data in %s", settings.nats_url, embedded.home / "jetstream")
        settings = await _sized(settings, jetstream_storage(embedded.home / "jetstream", settings.nats_max_store))
    settings = replace(settings, web_host="127.0.0.1", web_port=_free_or_any(http_port))
    learning = ServiceProcess("learning", child_environment(settings), as_json=as_json)

    async def ready(running: Running) -> None:
        if not await learning.ready(LEARNING_READY_SECONDS):
            log.warning("the learning service is not serving yet; the engine goes on, and it is started again")
        web = running.doors["web"]
        assert isinstance(web, WebServer)
        admin = read_secret(settings.home, TOKEN_FILE)
        log.info("dashboard on %s", web.url)
        if admin:
            link = web.sign_in_link(admin)
            print(json.dumps({"sign_in": link}) if as_json else
                  f"sign in to the dashboard (link good for two minutes, once): {link}", flush=True)
        log.info("engine ready; stop with Ctrl-C")
        if demo and admin:
            asyncio.create_task(_run_demo(EngineClient(running.nc, admin), web.url, as_json))

    stopping = asyncio.Event()
    serving = asyncio.create_task(embedded.keep_serving(stopping)) if embedded else None
    try:
        learning.start()     # beside the engine's own start, on the other core
        await serve(settings, ALL_SERVICES - {"learning"}, [d for d in DOORS if d != "mcp" or settings.mcp_port],
                    ready=ready, stop=stopping)
    finally:
        stopping.set()
        await learning.stop()
        if serving:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        if embedded:
            embedded.stop()
    return 0


async def _sized(settings: Settings, storage: int) -> Settings:
    """The capped streams' sizes fitted to the server `up` started, decided before the learning process starts
    with them (services/stream_sizes.py)."""
    nc = await settings.connect("playbook-up")
    try:
        return await decide_sizes(nc, settings, storage)
    finally:
        await nc.close()


async def _run_demo(client: EngineClient, web_url: str, as_json: bool) -> None:
    reply = await client.send(StartRun(playbook_id=DEMO_PLAYBOOK, parameters={"base_url": web_url},
                                       environment="staging"))
    if not reply.accepted or reply.run_id is None:
        log.error("demo not started: %s", reply.error and reply.error.message)
        return
    log.info("demo run %s: follow it with `playbook events %s --follow`", reply.run_id, reply.run_id)
    follower = Follower(reply.run_id, as_json=as_json)
    async for seq, event in client.follow(reply.run_id, resolved=True):
        follower.show(seq, event)
    log.info("demo run %s %s; replay it with `playbook replay %s`", reply.run_id, follower.run.status, reply.run_id)


def _free_or_any(port: int) -> int:
    """`port` if the web server can listen there, else 0 (any free one)."""
    import socket
    with socket.socket() as sock:
        # As asyncio's server binds: a restart is not pushed off its port by the last run's closed connections
        # (TIME_WAIT), which would leave open dashboards and bookmarks on a port nobody answers.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            log.warning("port %d is taken; the web server takes a free one", port)
            return 0
    return port


def _private(home: Path) -> None:
    """The home only its owner may enter: it holds every run's views, what was learned, the store and the
    credentials, and a step runs as another user (a root engine's steps as nobody) precisely so it cannot read
    them. Made so, or made so again if its owner is this process and others could enter it."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = home.stat()
    if mode.st_uid == os.geteuid() and mode.st_mode & 0o077:
        home.chmod(0o700)
        log.warning("made %s private (0700): it holds the engine's records and credentials", home)
