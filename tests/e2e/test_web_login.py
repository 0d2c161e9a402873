"""The web server alone (`python -m ui.web`, compose's `web`) under its own NATS login, pb-web, beside an engine
under pb-engine, on a nats-server that takes only the generated users.

Started before the engine, it says it waits for the engine's streams (its login may make none) and serves once
they are there. Then a person signs in to the dashboard (the identity service opens the session: the web writes
no token), sees runs and follows them live, starts one, signs out (the identity service closes the session);
`playbook audit` and `projections rebuild` are answered; a token used only at the web has its use recorded (by
the identity service, at the web's request). The web process is told of no permissions violation all along.
"""
from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import nats
import pytest
from yarl import URL

from app.root import ALL_SERVICES, serve
from events.identity import caller_headers
from services.embedded import free_port
from services.identity.credentials import TOKEN_FILE, nats_login, read_secret
from services.settings import Settings
from tests.e2e.conftest import Processes
from tests.e2e.test_split_deployment import _inherited
from tests.helpers import Message, noop, person, playbook_yaml, read_until, until
from ui.client import EngineClient
from ui.identity_client import IdentityClient

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def engine_under_its_login(url: str, home: Path) -> AsyncIterator[EngineClient]:
    """Every service but the web, as pb-engine (from the home's credentials); a client acting as the local admin."""
    stop, ready = asyncio.Event(), asyncio.Event()

    async def on_ready(_running: object) -> None:
        ready.set()

    task = asyncio.create_task(serve(Settings(nats_url=url, home=home, user="admin"), ALL_SERVICES, ready=on_ready,
                                     stop=stop))
    await asyncio.wait_for(ready.wait(), 20)
    login = nats_login("client", home)
    assert login is not None
    nc = await nats.connect(url, **login.connect_options())
    try:
        yield EngineClient(nc, read_secret(home, TOKEN_FILE))
    finally:
        await nc.close()
        stop.set()
        await asyncio.wait_for(task, 15)


def web_process(processes: Processes, url: str, home: Path, tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    login = nats_login("web", home)
    assert login is not None and login.user == "pb-web"
    with_login = url.replace("nats://", f"nats://{quote(login.user)}:{quote(login.password, safe='')}@")
    return processes.start("web", ["-m", "ui.web"], {
        **_inherited(), "NATS_URL": with_login, "PLAYBOOK_HOME": str(tmp_path / "web"), "PYTHONUNBUFFERED": "1",
        "PLAYBOOK_WEB_HOST": "127.0.0.1", "PLAYBOOK_WEB_PORT": str(port)})


async def test_the_web_alone_under_pb_web_waits_for_the_engine_then_signs_in_shows_runs_live_and_signs_out(
        secured_nats: tuple[str, Path], processes: Processes, tmp_path: Path) -> None:
    url, home = secured_nats
    port = free_port()
    web = web_process(processes, url, home, tmp_path, port)
    log = next(processes.logs.glob("web-*.log"))
    await until(lambda: "waiting for the engine to create its streams" in log.read_text(), timeout=20,
                what="the web saying it waits for the engine")
    assert web.poll() is None, log.read_text()

    base = f"http://127.0.0.1:{port}"
    origin = {"Origin": base}
    async with engine_under_its_login(url, home) as engine:
        await until(lambda: "ready: web" in log.read_text(), timeout=30, what="the web serving")
        assert engine.caller.credential is not None
        admin = engine.caller.credential

        async def ready() -> bool:      # its views caught up, and a probe written to the probe stream
            async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as answer:
                return answer.status == 200
        await until(ready, timeout=20, what="/readyz")
        async with aiohttp.ClientSession(headers=caller_headers(admin)) as http, \
                http.get(f"{base}/metrics") as metrics:     # whether each service takes its work: consumer info
            assert metrics.status == 200 and 'playbook_service_up{service="executor"} 1' in await metrics.text()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.post(f"{base}/api/session", json={"token": admin}, headers=origin) as signed_in:
                assert signed_in.status == 201, await signed_in.text()
                assert (await signed_in.json())["name"] == "admin"
            session = browser.cookie_jar.filter_cookies(URL(base))["pb_session"].value
            async with browser.get(f"{base}/api/session") as who:
                assert who.status == 200 and (await who.json())["name"] == "admin"

            async with browser.get(f"{base}/api/runs/stream") as live:
                snapshot = (await read_until(live, lambda m, _: True))[0]
                assert snapshot.event == "snapshot"
                async with browser.post(f"{base}/api/runs", headers=origin,
                                        json={"playbook": playbook_yaml([noop("one"), noop("two")])}) as started:
                    assert started.status == 201, await started.text()
                    run_id = (await started.json())["run_id"]

                def completed(message: Message, _seen: list[Message]) -> bool:
                    return message.data.get("run_id") == run_id and message.data.get("status") == "completed"
                await read_until(live, completed, timeout=30)
            async with browser.get(f"{base}/api/runs") as listed:
                runs = {run["run_id"]: run for run in (await listed.json())["runs"]}
                assert runs[run_id]["status"] == "completed" and runs[run_id]["actor"] == "admin"

            async with browser.delete(f"{base}/api/session", headers=origin) as signed_out:
                assert signed_out.status == 200, await signed_out.text()
        async with aiohttp.ClientSession() as stranger:     # the old cookie, after signing out: refused
            async with stranger.get(f"{base}/api/session", cookies={"pb_session": session}) as after:
                assert after.status == 401

        sessions = [t for t in await IdentityClient(engine.nc, admin).list(include_inactive=True)
                    if t.name == "dashboard session"]
        assert [(t.created_by, t.status, t.revoked_by) for t in sessions] == [("admin", "revoked", "admin")]
        # `playbook audit` and `playbook projections rebuild`: the web answers on the asker's inbox.
        audit = await engine.audit({"action": "sign_in"})
        assert audit["ok"] and [entry["actor"] for entry in audit["entries"]] == ["admin"], audit
        rebuilt = await engine.rebuild_projections(timeout=30)
        assert rebuilt["ok"] and rebuilt["runs"] >= 1, rebuilt

        carol = await person(engine, "carol")     # a token used at the web alone: its use is recorded
        assert carol.caller.credential is not None
        async with aiohttp.ClientSession(headers=caller_headers(carol.caller.credential)) as http, \
                http.get(f"{base}/api/runs") as seen:
            assert seen.status == 200

        async def carol_last_used() -> object:
            tokens = await IdentityClient(engine.nc, admin).list(owner="carol")
            return tokens[0].last_used_at
        await until(carol_last_used, timeout=10, what="carol's use recorded")

    said = log.read_text()
    assert "permissions violation" not in said.lower() and "Traceback" not in said, said
