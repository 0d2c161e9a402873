"""A backup taken while the engine runs, restored into a fresh home: every record is back, and what was running
at the backup waits for a person instead of running a second time on its own."""
from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from app.backup import backup
from app.restore import restore
from events.commands import StartRun
from events.identity import caller_headers
from events.run import StepStarted
from services.errors import PlaybookError
from services.owners import user_name
from services.settings import Settings
from tests.conftest import NatsServer
from tests.helpers import person, playbook_yaml, running_engine, until, until_event, wait_for_end, web_replica
from ui.client import EngineClient

pytestmark = pytest.mark.integration


async def start(engine: EngineClient, run_id: str, command: str) -> None:
    steps = [{"id": "work", "action": "shell", "args": {"command": command}}]
    reply = await engine.send(StartRun(playbook=playbook_yaml(steps), run_id=run_id))
    assert reply.accepted, reply


def private(top: Path) -> list[str]:
    """Paths in `top` that others may read."""
    return [str(p) for p in [top, *top.rglob("*")] if p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)]


async def the_backup_is_in_the_audit_for_admins_only(settings: Settings, admin: EngineClient, other: EngineClient,
                                                     saved: Path) -> None:
    async with web_replica(settings) as web, aiohttp.ClientSession() as http:
        async def backups(client: EngineClient) -> list[dict]:
            assert client.caller.credential is not None
            async with http.get(f"{web.url}/api/audit?action=backup",
                                headers=caller_headers(client.caller.credential)) as answer:
                assert answer.status == 200
                return list(await answer.json())
        entry, = await until(lambda: backups(admin), what="the backup in the audit")
        assert entry["actor"] == f"local:{user_name(os.geteuid())}"
        assert f"backed up the engine to {saved.resolve()}: " in entry["detail"] and "PB_RUNS" not in entry["detail"]
        assert await backups(other) == []            # an operator reads no identity records


async def test_a_backup_taken_mid_run_restores_runs_tokens_and_catalog_and_pauses_what_was_running(
        settings: Settings, tmp_path: Path) -> None:
    saved = tmp_path / "backup"
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("DEPLOY_KEY: s3cr3t-value\n")
    settings = replace(settings, environ={**settings.environ, "PLAYBOOK_SECRETS_FILE": str(secrets)})
    async with running_engine(settings) as engine:
        await start(engine, "done", "echo finished")
        await wait_for_end(engine, "done")
        await start(engine, "midway", "sleep 60")
        await until_event(engine, "midway", StepStarted)
        ci = await person(engine, "ci", "operator")
        taken = await backup(settings, saved)
        await the_backup_is_in_the_audit_for_admins_only(settings, engine, ci, saved)
    assert taken["streams"]["PB_RUNS"] > 0 and "home/credentials/token" in taken["files"]
    assert private(saved) == []     # it holds the local admin's token and the NATS logins

    # Into a fresh home with its own embedded server, as `playbook restore` on a new machine does.
    fresh = replace(settings, nats_url=None, home=tmp_path / "elsewhere",
                    environ={**settings.environ, "PLAYBOOK_SECRETS_FILE": str(tmp_path / "there" / "secrets.yaml")})
    restored = await restore(fresh, saved)
    assert restored["paused"] == ["midway"]
    assert (tmp_path / "there" / "secrets.yaml").read_text() == secrets.read_text()
    assert (fresh.home / "credentials" / "token").read_text() == (settings.home / "credentials" / "token").read_text()
    with pytest.raises(PlaybookError, match="already holds an engine's data"):
        await restore(fresh, saved)

    # Into another NATS server (NATS_URL), and the whole engine started on it.
    other = NatsServer(tmp_path / "other-jetstream")
    await other.start()
    try:
        moved = replace(settings, nats_url=other.url, home=tmp_path / "moved", environ={})
        await restore(moved, saved)
        async with running_engine(moved) as there:
            assert {r.run_id for r in await there.list_runs()} == {"done", "midway"}
            assert (await there.run("done")).status == "completed"
            midway = await there.run("midway")
            assert midway.status == "paused"
            assert midway.steps["work"].status == "pending"
            assert midway.steps["work"].attempt.category == "interrupted"
            # The token issued before the backup works on the restored engine.
            as_ci = EngineClient(there.nc, ci.caller.credential)
            assert {r.run_id for r in await as_ci.list_runs()} == {"done", "midway"}
        with pytest.raises(PlaybookError, match="--force"):
            await restore(moved, saved)
        again = await restore(moved, saved, force=True)       # what was there is replaced, not added to
        assert again["streams"]["PB_RUNS"] == taken["streams"]["PB_RUNS"]
    finally:
        other.stop()


async def test_a_backup_goes_only_into_a_new_or_empty_directory(settings: Settings, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "something").write_text("kept")
    async with running_engine(settings):
        with pytest.raises(PlaybookError, match="not empty"):
            await backup(settings, taken)
    assert (taken / "something").read_text() == "kept"
