"""The CLI's own NATS connection (`ui.cli.wire`) against a real nats-server: the login, requests, refusals,
stored messages in batches, and one run followed from its stored events into the live feed to its end."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from events import subjects
from events.commands import ApproveStep, Reply, StartRun
from events.run import ApprovalRequested, RunCompleted, RunEvent
from services.embedded import free_port
from services.errors import EngineUnavailable
from services.identity.credentials import nats_login
from tests.e2e.conftest import playbook_cli
from tests.helpers import playbook_yaml, until
from ui.cli import live_run
from ui.cli.live_run import LiveRun, stored_events
from ui.cli.wire import Connection, Refused, connect
from ui.client import EngineClient

pytestmark = pytest.mark.integration


def open_plain(url: str, user: str | None = None, password: str | None = None) -> Connection:
    connection = connect(url, user, password)
    assert connection is not None
    return connection


async def test_the_client_login_connects_and_a_wrong_password_is_refused(secured_nats: tuple[str, Path]) -> None:
    url, home = secured_nats
    login = nats_login("client", home)
    assert login is not None
    connection = await asyncio.to_thread(open_plain, url, login.user, login.password)
    connection.close()
    with pytest.raises(Refused, match="Authorization Violation"):
        await asyncio.to_thread(connect, url, login.user, "not-the-password")


async def test_a_publish_the_login_may_not_make_is_refused_not_lost(secured_nats: tuple[str, Path]) -> None:
    url, home = secured_nats
    login = nats_login("client", home)
    assert login is not None

    def forge() -> None:
        connection = open_plain(url, login.user, login.password)
        try:
            connection.request(subjects.run_event("forged", "RunStarted"), b"{}", timeout=5)
        finally:
            connection.close()

    with pytest.raises(Refused, match="Permissions Violation"):
        await asyncio.to_thread(forge)


async def test_a_request_nobody_answers_is_unavailable_at_once(nats_server) -> None:
    connection = await asyncio.to_thread(open_plain, nats_server.url)
    try:
        with pytest.raises(EngineUnavailable, match="nobody answers"):
            await asyncio.to_thread(connection.request, "pb.cmd.StartRun", b"{}", 30.0)
    finally:
        connection.close()


def test_urls_only_nats_py_speaks_are_left_to_it() -> None:
    assert connect("tls://127.0.0.1:4222", None, None) is None
    assert connect("ws://127.0.0.1:8080", None, None) is None


async def test_the_first_server_that_answers_of_a_list_serves(nats_server) -> None:
    closed = f"nats://127.0.0.1:{free_port()}"
    connection = await asyncio.to_thread(open_plain, f"{closed},{nats_server.url}")
    connection.close()
    with pytest.raises(EngineUnavailable, match="cannot reach NATS"):
        await asyncio.to_thread(connect, closed, None, None)


async def test_stored_messages_come_in_order_across_batches_and_whole_when_large(nats_server, nc: nats.NATS) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="T", subjects=["t.>"], allow_direct=True))
    big = bytes(range(256)) * 2400          # 600 KiB: more than one read from the socket
    for i in range(600):
        await js.publish(f"t.mine.{i % 3}", str(i).encode())
        await js.publish("t.other", b"not mine")
    await js.publish("t.mine.big", big)

    def read() -> tuple[list[int], list[bytes], bytes | None]:
        connection = open_plain(nats_server.url)
        try:
            stored = connection.stored("T", "t.mine.>", batch=256)
            last = connection.last("T", "t.other")
            return [int(m.headers["Nats-Sequence"]) for m in stored], [m.data for m in stored], last and last.data
        finally:
            connection.close()

    sequences, bodies, last_other = await asyncio.to_thread(read)
    assert bodies == [str(i).encode() for i in range(600)] + [big]
    assert sequences == sorted(sequences) and len(set(sequences)) == 601
    assert last_other == b"not mine"


GATED = playbook_yaml([{"id": "build", "action": "noop"},
                       {"id": "deploy", "action": "noop", "depends_on": ["build"],
                        "approval_gate": {"required_approvers": ["admin"], "allow_self_approval": True}},
                       {"id": "verify", "action": "noop", "depends_on": ["deploy"]}], name="gated")


async def followed_through_its_gate(engine: EngineClient, live: LiveRun, meanwhile: Callable[[], Awaitable[None]]
                                    | None = None) -> list[tuple[int, RunEvent]]:
    """Every event `live` yields, followed on a thread; the gate is approved once the follower has seen it asked
    (what came before was stored, the rest comes live), after `meanwhile`."""
    followed: list[tuple[int, RunEvent]] = []
    gate_asked = asyncio.Event()
    loop = asyncio.get_running_loop()

    def follow() -> None:
        for seq, event in live.follow():
            followed.append((seq, event))
            if isinstance(event, ApprovalRequested):
                loop.call_soon_threadsafe(gate_asked.set)

    following = asyncio.create_task(asyncio.to_thread(follow))
    await asyncio.wait_for(gate_asked.wait(), 15)
    if meanwhile is not None:
        await meanwhile()
    approved = await until(lambda: answered(engine, ApproveStep(run_id=live.run_id, step_id="deploy")),
                           what="the approval to be answered")
    assert approved.accepted, approved.error
    await asyncio.wait_for(following, 15)
    return followed


async def answered(engine: EngineClient, command: ApproveStep) -> Reply | None:
    """The engine's reply; None while it cannot answer (its services connecting again after NATS restarted)."""
    try:
        return await engine.send(command, timeout=2)
    except (EngineUnavailable, nats.errors.Error):
        return None


async def started_gated(engine: EngineClient) -> str:
    reply = await engine.send(StartRun(playbook=GATED))
    assert reply.accepted and reply.run_id
    return reply.run_id


async def test_a_run_is_followed_from_what_is_stored_into_the_live_feed_to_its_end(engine: EngineClient,
                                                                                  settings) -> None:
    run_id = await started_gated(engine)
    connection = await asyncio.to_thread(open_plain, settings.nats_url)
    try:
        followed = await followed_through_its_gate(engine, LiveRun(connection, run_id))
        stored = await asyncio.to_thread(stored_events, connection, run_id)
    finally:
        connection.close()
    assert isinstance(followed[-1][1], RunCompleted)
    assert [seq for seq, _ in followed] == [seq for seq, _ in await engine.events(run_id)]
    assert [seq for seq, _ in stored] == [seq for seq, _ in followed]
    assert followed[0][1].plan is not None                 # the pinned playbook was resolved, ready to fold


async def test_what_the_feed_never_brought_is_read_from_the_store_once_it_is_quiet(engine: EngineClient,
                                                                                  settings) -> None:
    """Core NATS could drop a feed message (a leader change): the follower reads the store when the feed is quiet."""
    run_id = await started_gated(engine)
    connection = await asyncio.to_thread(open_plain, settings.nats_url)
    try:
        live = LiveRun(connection, run_id)
        live.feed = connection.subscribe("pb.nothing.ever")      # a feed that brings nothing
        followed = await followed_through_its_gate(engine, live)
    finally:
        connection.close()
    assert isinstance(followed[-1][1], RunCompleted)
    assert [seq for seq, _ in followed] == [seq for seq, _ in await engine.events(run_id)]


async def test_a_follow_connects_again_after_nats_restarts_and_misses_nothing(engine: EngineClient, settings,
                                                                             nats_server) -> None:
    """NATS restarts while the run waits at its gate: the follower connects again, reads from the store what the
    feed sent while it was away, and follows the run to its end, every event once and in order."""
    run_id = await started_gated(engine)
    connection = await asyncio.to_thread(open_plain, settings.nats_url)

    async def restart() -> None:
        nats_server.stop()
        await nats_server.start()

    try:
        followed = await followed_through_its_gate(engine, LiveRun(connection, run_id), meanwhile=restart)
    finally:
        connection.close()
    assert isinstance(followed[-1][1], RunCompleted)
    assert [seq for seq, _ in followed] == [seq for seq, _ in await engine.events(run_id)]


async def test_a_follow_gives_up_with_a_clear_error_when_nats_stays_away(nats_server, monkeypatch) -> None:
    monkeypatch.setattr(live_run, "AWAY_AT_MOST", 0.5)
    js = (nc := await nats.connect(nats_server.url)).jetstream()
    await js.add_stream(StreamConfig(name=subjects.RUNS_STREAM, subjects=["pb.run.>"]))
    await nc.close()
    connection = await asyncio.to_thread(open_plain, nats_server.url)
    nats_server.stop()
    try:
        with pytest.raises(EngineUnavailable, match=r"gave up after 0.5 s.*playbook events never --follow"):
            await asyncio.to_thread(lambda: list(LiveRun(connection, "never").follow()))
    finally:
        connection.close()


async def test_following_a_run_that_does_not_exist_says_so_instead_of_waiting(engine: EngineClient,
                                                                              engine_env: dict[str, str]) -> None:
    followed = await asyncio.to_thread(playbook_cli, "events", "nope", "--follow", env=engine_env, timeout=30)
    assert (followed.returncode, followed.stderr.strip()) == (1, "no run with id 'nope'")


async def test_the_cli_given_a_wrong_login_in_nats_url_says_so_and_never_prints_the_password(
        secured_nats: tuple[str, Path], tmp_path: Path) -> None:
    """Another user of the machine, given the server's address but not its login: `playbook list` said "cannot
    reach NATS at nats://pb-client:<the password, in clear>@...: is `playbook up` running?" while it was."""
    url, _home = secured_nats
    wrong = url.replace("nats://", "nats://pb-client:not-the-Password-77@")
    env = {"PATH": "/usr/bin:/bin", "NATS_URL": wrong, "PLAYBOOK_HOME": str(tmp_path / "mine"),
           "PLAYBOOK_TOKEN": "pbt_0000000000000000_x"}
    for command in (["list"], ["status", "0123456789abcdef"], ["run", "--detach", "examples/hello.yaml"]):
        said = await asyncio.to_thread(playbook_cli, *command, env=env)
        assert said.returncode == 4, said.stderr
        assert "refused the login" in said.stderr and "Authorization Violation" in said.stderr, said.stderr
        assert "not-the-Password-77" not in said.stderr + said.stdout and "pb-client:***@" in said.stderr
        assert "is `playbook up` running" not in said.stderr
