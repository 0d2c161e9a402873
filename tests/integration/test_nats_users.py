"""NATS users on a real nats-server started with the generated configuration: only the engine writes events.

The engine runs under its own user, wired as `playbook up` wires it; a client may send
commands (which count only with a valid token) and read; a read-only agent may follow a run
through a consumer and do nothing else. Every refused publish is reported by the server (a
permissions violation on the client's error callback) and leaves the streams as they were.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timezone
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.aio.msg
import pytest
import yaml
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import APIError

from events import subjects
from events.codec import decode_event
from events.commands import ApproveStep, StartRun
from events.codec import encode
from events.identity import AccessRefused, BackupTaken, caller_headers
from events.run import ApprovalGranted, ApprovalRequested, RunCompleted, StepScheduled
from app.root import ALL_SERVICES, serve
from projections.identity_records import refusals as refusal_records
from services.embedded import server_binary
from services.errors import EngineUnavailable
from services.identity.credentials import TOKEN_FILE, read_secret
from services.runtime import Consumer
from services.settings import Settings, connect_options
from services.named_consumers import named_jetstream
from services.store import EventStore
from services.identity.credentials import NatsLogin, NatsRole, nats_login
from services.identity.nats_users import (
    ENGINE_CONSUMERS, REFERENCE_CLUSTER, ensure_nats_users, reference_cluster_config, reference_config,
)
from tests.helpers import person, playbook_yaml, refusals, started, until
from ui.catalog_client import CatalogClient, Published
from ui.client import EngineClient

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

GATED = playbook_yaml([{"id": "build", "action": "noop"},
                       {"id": "deploy", "action": "noop", "depends_on": ["build"],
                        "approval_gate": {"required_approvers": ["carol"]}}], name="gated")


@dataclass
class Connection:
    """A NATS connection as one role, with what the server told it went wrong."""

    nc: nats.NATS
    errors: list[str] = field(default_factory=list)

    async def violation(self, subject: str, timeout: float = 5.0) -> str:
        """The server's permissions violation for `subject`, awaited with a deadline."""
        async with asyncio.timeout(timeout):
            while True:
                found = [e for e in self.errors
                         if "permissions violation" in e.lower() and subject.lower() in e.lower()]
                if found:
                    return found[0]
                await asyncio.sleep(0.01)


@dataclass
class Secured:
    url: str
    home: Path
    logins: dict[NatsRole, NatsLogin]

    def url_as(self, role: NatsRole) -> str:
        login = self.logins[role]
        return self.url.replace("nats://", f"nats://{login.user}:{login.password}@")

    @contextlib.asynccontextmanager
    async def connect(self, role: NatsRole) -> AsyncIterator[Connection]:
        connection = Connection(nc=None)  # type: ignore[arg-type]

        async def on_error(err: Exception) -> None:
            connection.errors.append(str(err))

        connection.nc = await nats.connect(self.url, error_cb=on_error, **self.logins[role].connect_options())
        try:
            yield connection
        finally:
            await connection.nc.close()


@pytest.fixture
def secured(secured_nats: tuple[str, Path]) -> Secured:
    """The embedded nats-server with the generated users, as `playbook up` starts it, and each role's login."""
    url, home = secured_nats
    return Secured(url, home, {role: nats_login(role, home)
                               for role in ("engine", "executor", "web", "client", "agent")})


@contextlib.asynccontextmanager
async def serving(secured: Secured, services: frozenset[str]) -> AsyncIterator[None]:
    """These services in one `serve`, as `python -m ...` runs them, logging in from the home's credentials."""
    stop, ready = asyncio.Event(), asyncio.Event()

    async def on_ready(_running: object) -> None:
        ready.set()

    settings = Settings(nats_url=secured.url, home=secured.home, user="admin")   # the login from credentials/
    task = asyncio.create_task(serve(settings, services, ready=on_ready, stop=stop))
    try:
        await asyncio.wait_for(asyncio.shield(ready.wait()), 15)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def engine_as_its_user(secured: Secured, services: frozenset[str] = ALL_SERVICES) -> AsyncIterator[str]:
    """Every service (or those named) under the engine's user; yields the local admin's token the identity service
    wrote."""
    stop, ready = asyncio.Event(), asyncio.Event()

    async def on_ready(_running: object) -> None:
        ready.set()

    settings = Settings(nats_url=secured.url, home=secured.home, user="admin")   # the login from credentials/
    task = asyncio.create_task(serve(settings, services, ready=on_ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 15)
    try:
        admin = read_secret(secured.home, TOKEN_FILE)
        assert admin is not None
        yield admin
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def follow_with_named_consumer(nc: nats.NATS, run_id: str, until: type, timeout: float = 15.0) -> list:
    """Every event of the run through a pull consumer this reader names: created, fetched, acknowledged."""
    sub = await nc.jetstream().pull_subscribe(subjects.run_all(run_id), stream=subjects.RUNS_STREAM,
                                              config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT))
    events: list = []
    async with asyncio.timeout(timeout):
        while not events or not isinstance(events[-1], until):
            try:
                batch = await sub.fetch(10, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for msg in batch:
                events.append(decode_event(msg.data))
                await msg.ack()
    await sub.unsubscribe()
    return events


async def stream_messages(secured: Secured) -> int:
    async with secured.connect("engine") as engine:
        return (await engine.nc.jetstream().stream_info(subjects.RUNS_STREAM)).state.messages


async def test_the_generated_and_the_reference_configurations_are_valid_and_the_reference_is_current(
        tmp_path: Path) -> None:
    config = ensure_nats_users(tmp_path)
    checked = subprocess.run([server_binary(), "-t", "-c", str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert (ROOT / "config" / "nats-server.conf").read_text() == reference_config()
    env = {**os.environ, "PB_ENGINE_PASSWORD": "e", "PB_EXECUTOR_PASSWORD": "x", "PB_WEB_PASSWORD": "w",
           "PB_CLIENT_PASSWORD": "c", "PB_AGENT_PASSWORD": "a"}
    checked = subprocess.run([server_binary(), "-t", "-c", str(ROOT / "config" / "nats-server.conf")], env=env,
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


async def test_compose_runs_a_three_server_cluster_from_the_generated_configurations_which_are_current(
        tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    servers = {name: service for name, service in compose["services"].items() if name.startswith("nats-")}
    assert sorted(servers) == [node.name for node in REFERENCE_CLUSTER]
    env = {**os.environ, "PB_ENGINE_PASSWORD": "e", "PB_EXECUTOR_PASSWORD": "x", "PB_WEB_PASSWORD": "w",
           "PB_CLIENT_PASSWORD": "c", "PB_AGENT_PASSWORD": "a"}
    for node in REFERENCE_CLUSTER:
        config = ROOT / "config" / "nats-cluster" / f"{node.name}.conf"
        assert config.read_text() == reference_cluster_config(node)
        assert servers[node.name]["command"] == ["-c", f"/config/{node.name}.conf"]
        checked = subprocess.run([server_binary(), "-t", "-c", str(config)], env=env, capture_output=True, text=True,
                                 timeout=30)
        assert checked.returncode == 0, checked.stderr
    engine = compose["x-engine-login"]
    assert engine["PLAYBOOK_STREAM_REPLICAS"] == "3"
    assert [url.rsplit("@", 1)[1] for url in connect_options(engine["NATS_URL"])["servers"]] == [
        f"{node.name}:4222" for node in REFERENCE_CLUSTER]
    assert all(compose["services"][name]["environment"]["NATS_URL"] == engine["NATS_URL"]
               for name in ("identity", "run", "approval", "resilience"))
    executor = compose["x-executor-login"]["NATS_URL"]
    assert compose["services"]["executor"]["environment"]["NATS_URL"] == executor == engine["NATS_URL"].replace(
        "ENGINE", "EXECUTOR").replace("pb-engine", "pb-executor")
    web = compose["x-web-login"]["NATS_URL"]
    assert compose["services"]["web"]["environment"]["NATS_URL"] == web == engine["NATS_URL"].replace(
        "ENGINE", "WEB").replace("pb-engine", "pb-web")


async def test_logins_are_made_once_and_kept_across_restarts(tmp_path: Path) -> None:
    ensure_nats_users(tmp_path)
    first = {role: nats_login(role, tmp_path) for role in ("engine", "web", "client", "agent")}
    ensure_nats_users(tmp_path)
    assert {role: nats_login(role, tmp_path) for role in first} == first
    assert len({login.password for login in first.values()}) == len(first)


async def test_no_one_connects_without_a_login(secured: Secured) -> None:
    with pytest.raises(Exception, match="(?i)authorization"):
        await nats.connect(secured.url, max_reconnect_attempts=0, allow_reconnect=False)


async def test_the_engine_runs_under_its_user_and_a_client_drives_a_run_through_its_gate(secured: Secured) -> None:
    async with engine_as_its_user(secured) as admin, secured.connect("client") as client:
        engine = EngineClient(client.nc, admin)
        reply = await engine.send(StartRun(playbook=GATED))
        assert reply.accepted, reply.error
        await follow_with_named_consumer(client.nc, reply.run_id, ApprovalRequested)
        carol = await person(engine, "carol", "approver")
        approved = await carol.send(ApproveStep(run_id=reply.run_id, step_id="deploy"))
        assert approved.accepted, approved.error
        events = await follow_with_named_consumer(client.nc, reply.run_id, RunCompleted)
        assert isinstance(events[-1], RunCompleted)
        assert (await engine.run(reply.run_id)).status == "completed"      # direct get, as `playbook status`
        followed = [event async for _, event in engine.follow(reply.run_id)]  # as `playbook run` follows
        assert followed == events
        assert client.errors == []


async def test_a_client_login_without_a_valid_token_changes_nothing_and_is_recorded(secured: Secured) -> None:
    async with engine_as_its_user(secured) as admin, secured.connect("client") as client:
        reply = await EngineClient(client.nc, admin).send(StartRun(playbook=GATED))
        await follow_with_named_consumer(client.nc, reply.run_id, ApprovalRequested)
        before = await stream_messages(secured)
        approve = {"run_id": reply.run_id, "step_id": "deploy", "actor": "carol"}
        tampered = admin[:-1] + ("B" if admin.endswith("A") else "A")      # never the admin's own token
        for headers in (None, caller_headers("pbt_0123456789abcdef_" + "x" * 43), caller_headers(tampered)):
            answer = await client.nc.request(subjects.command("ApproveStep"), json.dumps(approve).encode(),
                                             timeout=5, headers=headers)
            assert json.loads(answer.data)["error"]["code"] == "unauthenticated"
        started = await EngineClient(client.nc).send(StartRun(playbook=GATED))
        assert (started.accepted, started.error.code) == (False, "unauthenticated")
        assert await stream_messages(secured) == before
        async with secured.connect("engine") as engine:
            recorded = [(r.principal, r.action, r.code) for r in await refusals(engine.nc)]
        assert recorded == [("anonymous", "approve", "unauthenticated")] * 3 + [
            ("anonymous", "start", "unauthenticated")]


async def test_a_client_cannot_publish_any_event_and_the_stream_is_unchanged(secured: Secured) -> None:
    async with engine_as_its_user(secured) as admin, secured.connect("client") as client:
        reply = await EngineClient(client.nc, admin).send(StartRun(playbook=GATED))
        await follow_with_named_consumer(client.nc, reply.run_id, ApprovalRequested)   # the run rests at its gate
        before = await stream_messages(secured)
        forged = {"run_id": reply.run_id, "at": "2026-01-01T00:00:00Z", "step_id": "deploy", "actor": "carol"}
        for subject in (subjects.run_event(reply.run_id, "ApprovalGiven"), subjects.run_event("r2", "RunStarted"),
                        f"{subjects.circuit('x')}.CircuitReset", f"{subjects.token('0123456789abcdef')}.TokenCreated",
                        subjects.approval_timer(reply.run_id, "deploy")):
            await client.nc.publish(subject, json.dumps(forged).encode())
            assert "permissions violation" in (await client.violation(subject)).lower()
        with pytest.raises(nats.errors.TimeoutError):
            await client.nc.jetstream().publish(subjects.run_event(reply.run_id, "StepSucceeded"), b"{}", timeout=1)
        assert await stream_messages(secured) == before
        run = await EngineClient(client.nc, admin).run(reply.run_id)
        assert run.steps["deploy"].gate.status == "requested" and not run.steps["deploy"].gate.approvals


async def test_a_client_sends_commands_but_cannot_touch_streams_engine_consumers_or_identity(secured: Secured) -> None:
    async with engine_as_its_user(secured) as admin, secured.connect("client") as client:
        reply = await EngineClient(client.nc, admin).send(StartRun(playbook=GATED))
        assert reply.accepted
        stream_api = [f"$JS.API.STREAM.{verb}.{subjects.RUNS_STREAM}"
                      for verb in ("CREATE", "UPDATE", "DELETE", "PURGE")]
        hijack = {"stream_name": subjects.RUNS_STREAM,
                  "config": {"name": "executor", "deliver_subject": "_INBOX.mine", "deliver_group": "executor",
                             "ack_policy": "explicit"}}
        for subject in (*stream_api, f"$JS.API.STREAM.CREATE.{subjects.IDENTITY_STREAM}",
                        f"$JS.API.CONSUMER.CREATE.{subjects.RUNS_STREAM}",              # the unnamed form takes the
                        f"$JS.API.CONSUMER.CREATE.{subjects.RUNS_STREAM}.executor",     # name from the body
                        f"$JS.API.CONSUMER.DELETE.{subjects.RUNS_STREAM}.advancer",
                        f"$JS.API.DIRECT.GET.{subjects.IDENTITY_STREAM}",
                        f"$JS.API.CONSUMER.CREATE.{subjects.IDENTITY_STREAM}.mine"):
            with pytest.raises(nats.errors.TimeoutError):
                await client.nc.request(subject, json.dumps(hijack).encode(), timeout=0.5)
            assert "permissions violation" in (await client.violation(subject)).lower()
        async with secured.connect("engine") as engine:
            info = await engine.nc.jetstream().consumer_info(subjects.RUNS_STREAM, "executor")
            assert info.config.deliver_subject == f"_pb.deliver.{subjects.RUNS_STREAM}.executor"
            assert (await engine.nc.jetstream().stream_info(subjects.RUNS_STREAM)).config.subjects


async def test_a_read_only_agent_follows_every_event_of_a_run_and_can_send_no_command(secured: Secured) -> None:
    async with engine_as_its_user(secured) as admin, secured.connect("client") as client, \
            secured.connect("agent") as agent:
        reply = await EngineClient(client.nc, admin).send(StartRun(playbook=GATED))
        with pytest.raises(nats.errors.TimeoutError):
            await agent.nc.request(subjects.command("ApproveStep"),
                                   json.dumps({"run_id": reply.run_id, "step_id": "deploy", "actor": "carol"}).encode(),
                                   timeout=1)
        assert "permissions violation" in (await agent.violation(subjects.command("ApproveStep"))).lower()
        await agent.nc.publish(subjects.run_event(reply.run_id, "RunCancelled"), b"{}")
        assert "permissions violation" in (await agent.violation(reply.run_id)).lower()

        await follow_with_named_consumer(agent.nc, reply.run_id, ApprovalRequested)
        carol = await person(EngineClient(client.nc, admin), "carol", "approver")
        approved = await carol.send(ApproveStep(run_id=reply.run_id, step_id="deploy"))
        assert approved.accepted, approved.error
        seen = await follow_with_named_consumer(agent.nc, reply.run_id, RunCompleted)
        recorded = [event for _, event in await EngineClient(client.nc, admin).events(reply.run_id)]
        assert seen == recorded and [type(e).__name__ for e in seen][:2] == ["RunStarted", "StepScheduled"]


async def test_the_engine_creates_exactly_the_durable_consumers_denied_to_readers(secured: Secured) -> None:
    async with engine_as_its_user(secured), secured.connect("engine") as engine:
        consumers = await engine.nc.jetstream().consumers_info(subjects.RUNS_STREAM)
    assert {info.name for info in consumers if info.config.durable_name} == set(ENGINE_CONSUMERS)


async def test_a_client_publishes_and_starts_a_playbook_too_large_for_a_message_but_cannot_write_the_catalog(
        secured: Secured) -> None:
    """Large texts travel through PB_UPLOADS, which a client may only write to; the catalog, the playbooks
    runs pin and their events stay the engine's to write, and anyone may read them."""
    big = playbook_yaml([{"id": "build", "action": "noop"}], name="big", description="x" * 2 * 2**20)
    async with (engine_as_its_user(secured) as admin, secured.connect("client") as client,
                secured.connect("agent") as agent):
        catalog = CatalogClient(EngineClient(client.nc, admin))
        published = await catalog.publish(big)
        assert isinstance(published, Published), published
        reply = await EngineClient(client.nc, admin).send(StartRun(playbook_id="big"))
        assert reply.accepted, reply.error
        await follow_with_named_consumer(client.nc, reply.run_id, RunCompleted)
        assert client.errors == []

        reader = CatalogClient(EngineClient(agent.nc))                 # an agent reads the catalog and the pins
        assert await reader.text("big@1") == big
        assert (await EngineClient(agent.nc).run(reply.run_id)).playbook.description == "x" * 2 * 2**20
        with pytest.raises(EngineUnavailable):
            await EngineClient(agent.nc).playbooks.upload(big)       # but stages nothing
        assert "permissions violation" in (await agent.violation(f"$O.{subjects.UPLOADS_BUCKET}")).lower()

        forged = {"name": "big", "at": "2026-01-01T00:00:00Z", "version": "1", "digest": "sha256:" + "0" * 64,
                  "parsed": "sha256:" + "0" * 64, "actor": "mallory", "bytes": 1, "steps": 1}
        for subject in (f"{subjects.catalog_entry('big')}.PlaybookPublished",
                        f"$O.{subjects.PLAYBOOKS_BUCKET}.M.c2hhMjU2",
                        f"$JS.API.DIRECT.GET.{subjects.object_stream(subjects.UPLOADS_BUCKET)}"):
            await client.nc.publish(subject, json.dumps(forged).encode())
            assert "permissions violation" in (await client.violation(subject)).lower()
        assert [v.actor for v in await catalog.versions("big")] == ["admin"]


async def test_a_client_cannot_roll_up_the_uploads_of_others(secured: Secured) -> None:
    """A client may write to PB_UPLOADS, but a `Nats-Rollup: all` there would purge every upload in flight:
    objects are written once under a new name, so no bucket takes rollups, and a staged upload survives it."""
    async with (engine_as_its_user(secured) as admin, secured.connect("client") as victim,
                secured.connect("client") as mallory):
        staged = await EngineClient(victim.nc, admin).playbooks.upload(
            playbook_yaml([{"id": "build", "action": "noop"}], name="staged"))
        with pytest.raises(APIError):
            await mallory.nc.jetstream().publish(f"$O.{subjects.UPLOADS_BUCKET}.M.cm9sbA", b"{}",
                                                 headers={"Nats-Rollup": "all"})
        reply = await EngineClient(victim.nc, admin).send(StartRun(upload=staged))
        assert reply.accepted, reply.error


async def test_readers_watch_the_feed_and_follow_by_named_consumers_and_only_the_server_publishes_there(
        secured: Secured) -> None:
    async with (engine_as_its_user(secured) as admin, secured.connect("engine") as engine,
                secured.connect("client") as client, secured.connect("agent") as agent):
        watching = {"client": await client.nc.subscribe(subjects.RUN_FEED_SUBJECTS),
                    "agent": await agent.nc.subscribe(subjects.RUN_FEED_SUBJECTS)}
        await client.nc.flush(), await agent.nc.flush()
        forged = subjects.RUN_FEED_SUBJECTS.replace(">", "r1.RunCompleted")
        for role in (engine, client, agent):
            await role.nc.publish(forged, b'{"type": "RunCompleted", "run_id": "r1"}')
            assert "permissions violation" in (await role.violation(forged)).lower()

        reply = await EngineClient(client.nc, admin).send(StartRun(playbook=GATED))
        as_agent = EngineClient(agent.nc)
        async for _, event in as_agent.follow(reply.run_id):                  # consumers the agent names
            if isinstance(event, ApprovalRequested):
                break
        carol = await person(EngineClient(client.nc, admin), "carol", "approver")
        assert (await carol.send(ApproveStep(run_id=reply.run_id, step_id="deploy"))).accepted
        followed = [(seq, event) async for seq, event in as_agent.follow(reply.run_id)]
        assert isinstance(followed[-1][1], RunCompleted)
        for sub in watching.values():
            fed = [await sub.next_msg(timeout=5) for _ in followed]           # the forged one came first, if at all
            assert [(int(m.headers["Nats-Sequence"]), m.headers["Nats-Stream"], m.subject) for m in fed] == [
                (seq, subjects.RUNS_STREAM, subjects.RUN_FEED_SUBJECTS.replace(">", f"{reply.run_id}.")
                 + type(event).__name__) for seq, event in followed]
        assert [e for e in client.errors + agent.errors if forged.lower() not in e.lower()] == []


async def test_deliveries_a_reader_points_at_an_engine_consumer_are_not_its_work(secured: Secured) -> None:
    """NATS lets a reader name any deliver subject for its own push consumer: copies of stored events then reach
    the engine's. The engine's consumer takes only deliveries acknowledged to itself."""
    handled: list[int] = []

    async def handle(_msg, _event, seq: int) -> None:
        handled.append(seq)

    async with secured.connect("engine") as engine, secured.connect("client") as reader:
        store = EventStore(engine.nc)
        await store.ensure_stream()
        await store.append("r1", [started("r1", [{"id": "a", "action": "noop"}])], expected=0)
        worker = Consumer(engine.nc, subjects.RUNS_STREAM, "executor", [subjects.RUN_SUBJECTS], handle)
        await worker.start()
        try:
            await until(lambda: handled == [1], what="the engine's own delivery")
            injected = await reader.nc.jetstream().add_consumer(subjects.RUNS_STREAM, ConsumerConfig(
                name="mine", deliver_subject=f"_pb.deliver.{subjects.RUNS_STREAM}.executor", deliver_group="executor",
                ack_policy=AckPolicy.EXPLICIT, ack_wait=30))
            assert injected.name == "mine"
            await until(lambda: worker.ignored == 1, what="the injected copy reaching the engine's consumer")
            info = await reader.nc.jetstream().consumer_info(subjects.RUNS_STREAM, "mine")
            assert (handled, info.num_ack_pending, info.ack_floor.consumer_seq) == ([1], 1, 0)   # not done, not acked
        finally:
            await worker.stop()


async def test_readers_read_output_lines_from_the_first_and_only_the_engine_writes_them(secured: Secured) -> None:
    async with (engine_as_its_user(secured) as admin, secured.connect("client") as client,
                secured.connect("agent") as agent):
        printing = playbook_yaml([{"id": "say", "action": "shell", "args": {"command": "echo one; echo two"},
                                   "timeout_seconds": 5}], name="printing")
        reply = await EngineClient(client.nc, admin).send(StartRun(playbook=printing))
        for reader in (client, agent):
            lines = [item async for _, item in EngineClient(reader.nc).logs(reply.run_id, "say", 1, follow=True)]
            assert [getattr(line, "text", type(line).__name__) for line in lines] == ["one", "two", "OutputEnded"]
        forged = subjects.live_output(reply.run_id, "say", 1)
        for reader in (client, agent):
            await reader.nc.publish(forged, b'{"type": "OutputLine", "text": "rm -rf /"}')
            assert "permissions violation" in (await reader.violation(forged)).lower()
        stored = [item async for _, item in EngineClient(agent.nc).logs(reply.run_id)]
        assert [getattr(line, "text", None) for line in stored] == ["one", "two", None]


async def test_the_web_login_forges_no_event_writes_no_token_and_touches_no_stream(secured: Secured) -> None:
    """pb-web, the login of the web server that faces HTTP: whoever takes it may send commands (which count only
    with a token) and read, and record a refusal; never approve a gate by an event, mint a token or drop a stream."""
    async with engine_as_its_user(secured) as admin, secured.connect("web") as web:
        reply = await EngineClient(web.nc, admin).send(StartRun(playbook=GATED))
        assert reply.accepted, reply.error
        await follow_with_named_consumer(web.nc, reply.run_id, ApprovalRequested)   # the run rests at its gate
        before = await stream_messages(secured)
        async with secured.connect("engine") as engine:
            tokens_before = (await engine.nc.jetstream().stream_info(subjects.IDENTITY_STREAM)).state.last_seq
        forged = {"run_id": reply.run_id, "at": "2026-01-01T00:00:00Z", "step_id": "deploy", "actor": "carol"}
        minted = {"type": "TokenCreated", "at": "2026-01-01T00:00:00Z", "token_id": "0123456789abcdef",
                  "name": "mine", "owner": "mallory", "secret_hash": "0" * 64, "actor": "admin",
                  "grants": [{"role": "admin"}, {"role": "unsafe_shell"}]}
        for subject, body in ((subjects.run_event(reply.run_id, "ApprovalGiven"), forged),
                              (f"{subjects.token('0123456789abcdef')}.TokenCreated", minted),
                              (f"{subjects.token('0123456789abcdef')}.TokenUsed", minted),
                              (subjects.backup_taken(), forged)):
            await web.nc.publish(subject, json.dumps(body).encode())
            assert "permissions violation" in (await web.violation(subject)).lower()
        for subject in (*(f"$JS.API.STREAM.{verb}.{stream}" for verb in ("DELETE", "PURGE", "UPDATE", "CREATE")
                          for stream in (subjects.RUNS_STREAM, subjects.IDENTITY_STREAM)),
                        f"$JS.API.CONSUMER.DELETE.{subjects.RUNS_STREAM}.executor",
                        f"$JS.API.CONSUMER.DELETE.{subjects.IDENTITY_STREAM}.pbr_theirs",   # a registry's
                        f"$JS.API.CONSUMER.CREATE.{subjects.RUNS_STREAM}",       # the unnamed form: a name in the body
                        f"$JS.API.CONSUMER.CREATE.{subjects.IDENTITY_STREAM}"):
            with pytest.raises(nats.errors.TimeoutError):
                await web.nc.request(subject, json.dumps({"name": "executor"}).encode(), timeout=0.5)
            assert "permissions violation" in (await web.violation(subject)).lower()
        await web.nc.subscribe(subjects.COMMAND_SUBJECTS)     # others' commands, with their bearer tokens
        assert "permissions violation" in (await web.violation(subjects.COMMAND_SUBJECTS)).lower()

        async with secured.connect("engine") as engine:
            js = engine.nc.jetstream()
            assert (await js.stream_info(subjects.IDENTITY_STREAM)).state.last_seq == tokens_before
            assert (await js.consumer_info(subjects.RUNS_STREAM, "executor")).config.durable_name == "executor"
        assert await stream_messages(secured) == before
        run = await EngineClient(web.nc, admin).run(reply.run_id)
        assert run.steps["deploy"].gate.status == "requested" and not run.steps["deploy"].gate.approvals
        # What it may: see whether each service takes its work (/metrics), and record a refusal at its door.
        assert (await web.nc.jetstream().consumer_info(subjects.RUNS_STREAM, "executor")).name == "executor"
        refused = AccessRefused(at=datetime.now(timezone.utc), principal="anonymous", door="http", action="GET /",
                                code="unauthenticated", reason="a test")
        # A refusal's subject with a backup record's body: no backup, in the audit, that no one took.
        taken = BackupTaken(at=datetime.now(timezone.utc), actor="local:mallory", target="/tmp/mine")
        await web.nc.jetstream().publish(subjects.access_refused("http"), encode(taken), timeout=5)
        await web.nc.jetstream().publish(subjects.access_refused("http"), encode(refused), timeout=5)
        audit = refusal_records(web.nc)
        await audit.start()
        try:
            await until(lambda: [e.action for e in audit.entries] == ["refused"], what="the refusal in the audit")
        finally:
            await audit.stop()


async def test_the_web_login_follows_identity_and_runs_through_consumers_it_names(secured: Secured) -> None:
    """The web server's token registry and views read with ordered consumers, which nats-py makes unnamed: under
    pb-web each gets a name of its own, and a reset (a new consumer) another."""
    async with engine_as_its_user(secured) as admin, secured.connect("web") as web:
        seen: list[str] = []

        async def on_message(msg: nats.aio.msg.Msg) -> None:
            seen.append(msg.subject)

        js = named_jetstream(web.nc)
        sub = await js.subscribe(subjects.TOKEN_SUBJECTS, stream=subjects.IDENTITY_STREAM, cb=on_message,
                                 ordered_consumer=True)
        first = sub._consumer
        await until(lambda: any(s.endswith("TokenCreated") for s in seen), what="the admin's token")
        await sub._sub._jsi.reset_ordered_consumer(1)    # nats-py's own step after a gap or a missed heartbeat
        await until(lambda: sub._consumer != first, what="a new consumer")
        assert first.startswith("pbr_") and sub._consumer.startswith("pbr_")
        await person(EngineClient(web.nc, admin), "carol")
        await until(lambda: len({s for s in seen if s.endswith("TokenCreated")}) == 2, what="carol's, after the reset")
        assert not [e for e in web.errors if "permissions violation" in e.lower()], web.errors


BUILT_THEN_GATED = playbook_yaml([
    {"id": "build", "action": "shell", "timeout_seconds": 10, "args": {"command": "echo built"},
     "circuit": {"failure_rate": 0.5}},     # a breaker that counts successes: the executor records them
    {"id": "deploy", "action": "noop", "depends_on": ["build"], "approval_gate": {"required_approvers": ["carol"]}}],
    name="built-then-gated")


async def test_the_executor_login_runs_steps_but_forges_no_gate_run_or_token_and_touches_no_stream(
        secured: Secured, caplog: pytest.LogCaptureFixture) -> None:
    """pb-executor, the login of an executor alone (`python -m services.executor`), which runs operators' shell
    commands: it records its steps and the run service advances the run; whoever takes it may not approve a gate,
    start, steer or end a run, mint a token, read others' commands, take another service's work or change a
    stream."""
    async with engine_as_its_user(secured, ALL_SERVICES - {"executor"}) as admin, \
            serving(secured, frozenset({"executor"})), secured.connect("executor") as executor, \
            secured.connect("client") as client:
        reply = await EngineClient(client.nc, admin).send(StartRun(playbook=BUILT_THEN_GATED))
        assert reply.accepted, reply.error
        await follow_with_named_consumer(client.nc, reply.run_id, ApprovalRequested)   # its shell step ran
        before = await stream_messages(secured)
        forged = {"run_id": reply.run_id, "at": "2026-01-01T00:00:00Z", "step_id": "deploy", "actor": "carol"}
        for subject in (*(subjects.run_event(reply.run_id, kind) for kind in (
                            "ApprovalGiven", "ApprovalGranted", "RunCancelRequested", "RunCompleted", "RunPaused",
                            "RollbackStarted", "StepRetryScheduled")),
                        subjects.run_event("r2", "RunStarted"), f"{subjects.token('0123456789abcdef')}.TokenCreated",
                        f"{subjects.circuit('x')}.CircuitReset",     # an admin's: the executor's are calls, trials
                        subjects.approval_timer(reply.run_id, "deploy"), subjects.access_refused("http"),
                        f"$JS.ACK.{subjects.RUNS_STREAM}.advancer.1.1.1.1.1.1", "_INBOX.someone.else"):
            await executor.nc.publish(subject, json.dumps(forged).encode())
            assert "permissions violation" in (await executor.violation(subject)).lower()
        hijack = {"stream_name": subjects.RUNS_STREAM,
                  "config": {"name": "advancer", "deliver_subject": "_INBOX.mine", "ack_policy": "explicit"}}
        for subject in (*(f"$JS.API.STREAM.{verb}.{stream}" for verb in ("DELETE", "PURGE", "UPDATE", "CREATE")
                          for stream in (subjects.RUNS_STREAM, subjects.IDENTITY_STREAM, "PB_LEASES")),
                        f"$JS.API.CONSUMER.CREATE.{subjects.RUNS_STREAM}",           # the unnamed form
                        f"$JS.API.CONSUMER.CREATE.{subjects.RUNS_STREAM}.advancer",
                        f"$JS.API.CONSUMER.DELETE.{subjects.RUNS_STREAM}.advancer",
                        f"$JS.API.CONSUMER.DELETE.{subjects.RUNS_STREAM}.executor",
                        f"$JS.API.DIRECT.GET.{subjects.IDENTITY_STREAM}"):
            await executor.nc.publish(subject, json.dumps(hijack).encode(), reply=executor.nc.new_inbox())
            assert "permissions violation" in (await executor.violation(subject)).lower()
        for subject in (subjects.COMMAND_SUBJECTS, f"_pb.deliver.{subjects.RUNS_STREAM}.advancer"):
            await executor.nc.subscribe(subject)    # others' commands with their tokens; another service's work
            assert "permissions violation" in (await executor.violation(subject)).lower()

        assert await stream_messages(secured) == before
        async with secured.connect("engine") as engine:
            js = engine.nc.jetstream()
            assert {info.name for info in await js.consumers_info(subjects.RUNS_STREAM)} >= set(ENGINE_CONSUMERS)
            assert (await js.consumer_info(subjects.RUNS_STREAM, "advancer")).config.deliver_subject == \
                f"_pb.deliver.{subjects.RUNS_STREAM}.advancer"
            for stream in (subjects.IDENTITY_STREAM, "PB_LEASES"):
                assert (await js.stream_info(stream)).config.subjects
        run = await EngineClient(client.nc, admin).run(reply.run_id)
        assert run.steps["deploy"].gate.status == "requested" and not run.steps["deploy"].gate.approvals
        assert run.steps["build"].status == "succeeded" and run.steps["build"].attempt.executor
        # What it may write, it may not write past a gate: a step scheduled behind a gate no one granted is set aside.
        scheduled = StepScheduled(run_id=reply.run_id, at=datetime.now(timezone.utc), step_id="deploy", attempt=1)
        await EventStore(executor.nc).append(reply.run_id, [scheduled], run.version)
        run = await EngineClient(client.nc, admin).run(reply.run_id)
        assert run.steps["deploy"].status == "pending" and run.steps["deploy"].gate.status == "requested"
        assert [(q.event, q.step_id) for q in run.quarantined] == [("StepScheduled", "deploy")]
        # Nor past its subject: NATS lets it publish on pb.run.*.StepSucceeded, and a body there that says it is an
        # approval is no approval, but a message of no known kind, set aside.
        granted = ApprovalGranted(run_id=reply.run_id, at=datetime.now(timezone.utc), step_id="deploy",
                                  approvers=["carol"], actor="carol")
        await executor.nc.jetstream().publish(subjects.run_event(reply.run_id, "StepSucceeded"), encode(granted))
        run = await EngineClient(client.nc, admin).run(reply.run_id)
        assert run.steps["deploy"].status == "pending" and run.steps["deploy"].gate.status == "requested"
        assert [q.event for q in run.quarantined] == ["StepScheduled", "StepSucceeded"]
        assert "says it is an ApprovalGranted" in run.quarantined[-1].reason
        # Nor through a message schedule: NATS takes one on a subject it may publish, and stores its body, when
        # due, on the subject it names (an approval's); only the engine's timers (pb.timer.>) store events so, and
        # what another schedule stored is set aside.
        timed = {"Nats-Schedule": "@at 2026-01-01T00:00:00.000000Z",
                 "Nats-Schedule-Target": subjects.run_event(reply.run_id, "ApprovalGranted")}
        # (When it fires, the server purges the subject the schedule was on: on another run's, no history is lost.)
        await executor.nc.jetstream().publish(subjects.run_event("elsewhere", "StepSucceeded"), encode(granted),
                                              headers=timed, timeout=5)

        async def set_aside() -> bool:
            seen = await EngineClient(client.nc, admin).run(reply.run_id)
            return bool(seen.quarantined) and seen.quarantined[-1].event == "ApprovalGranted"
        await until(set_aside, what="the scheduled approval stored, and set aside")
        run = await EngineClient(client.nc, admin).run(reply.run_id)
        assert run.steps["deploy"].gate.status == "requested"
        assert "a message schedule on" in run.quarantined[-1].reason
        assert run.status == "running"      # what was set aside is no one's work: no give-up record ends the run
        shown = subprocess.run([sys.executable, "-m", "ui.cli.main", "events", reply.run_id, "--json"], cwd=ROOT,
                               env={**os.environ, "PLAYBOOK_HOME": str(secured.home), "NATS_URL": secured.url,
                                    "PLAYBOOK_TOKEN": admin}, capture_output=True, text=True, timeout=60)
        lines = [json.loads(line) for line in shown.stdout.splitlines()]    # `playbook events` shows it as it is
        assert [line["stored_type"] for line in lines if line["type"] == "Unreadable"
                and "a message schedule on" in line["error"]] == ["ApprovalGranted"], shown.stdout
        assert not [line for line in lines if line["type"] == "ApprovalGranted"], shown.stdout
        carol = await person(EngineClient(client.nc, admin), "carol", "approver")
        approved = await carol.send(ApproveStep(run_id=reply.run_id, step_id="deploy"))
        assert approved.accepted, approved.error
        events = await follow_with_named_consumer(client.nc, reply.run_id, RunCompleted)
        assert [type(e).__name__ for e in events if getattr(e, "step_id", "") == "deploy"][-2:] == [
            "StepStarted", "StepSucceeded"]
    # The executor's own connection was refused nothing: it asks only what its login may.
    said = [r.getMessage() for r in caplog.records if "permissions violation" in r.getMessage().lower()]
    assert not said, said


async def test_an_executor_under_its_login_beside_playbook_up_waits_for_a_run_service_that_advances_after_it(
        secured: Secured, caplog: pytest.LogCaptureFixture) -> None:
    """`playbook up` (every service in one process) advances a run in its own executor's decisions, and its advancer
    follows no step outcome: an executor alone under pb-executor, which advances nothing, would leave every run it
    touched stopped after that step. It says so and takes no work; given the engine's login, it works as the engine's
    executor does."""
    async with engine_as_its_user(secured):
        stop, ready = asyncio.Event(), asyncio.Event()

        async def on_ready(_running: object) -> None:
            ready.set()
        alone = asyncio.create_task(serve(Settings(nats_url=secured.url, home=secured.home), {"executor"},
                                          ready=on_ready, stop=stop))
        await until(lambda: any("waiting for a run service that advances runs after executors elsewhere"
                                in r.getMessage() for r in caplog.records), what="the executor saying it waits")
        assert not ready.is_set()
        stop.set()
        await asyncio.wait_for(alone, 15)
        as_engine = Settings(nats_url=secured.url_as("engine"), home=secured.home)
        stop, ready = asyncio.Event(), asyncio.Event()
        alone = asyncio.create_task(serve(as_engine, {"executor"}, ready=on_ready, stop=stop))
        await asyncio.wait_for(ready.wait(), 15)
        stop.set()
        await asyncio.wait_for(alone, 15)
