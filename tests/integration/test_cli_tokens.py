"""`playbook token create|list|revoke` against the identity service on a real nats-server."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

import pytest

from services.errors import PlaybookError
from services.settings import Settings
from tests.helpers import refusals
from tests.integration.test_identity_service import Engine, identity_engine
from ui.cli.tokens import parse_expiry, register

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(nats_server, tmp_path: Path, monkeypatch) -> Engine:
    monkeypatch.setenv("NATS_URL", nats_server.url)
    monkeypatch.setenv("PLAYBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PLAYBOOK_TOKEN", raising=False)
    async with identity_engine(nats_server.url, tmp_path / "home") as running:
        yield running


async def playbook_token(*argv: str) -> int:
    """`playbook token ...` as the CLI runs it (its own event loop, in a thread beside the engine's)."""
    parser = argparse.ArgumentParser(prog="playbook")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["token", *argv])
    return await asyncio.to_thread(args.handler, args, Settings.from_environ(os.environ))


async def test_the_local_admin_creates_a_token_printed_once_alone_on_stdout(engine: Engine, capsys) -> None:
    assert await playbook_token("create", "alice's laptop", "--owner", "Alice", "--grant", "operator:deploy-*@staging",
                                "--expires", "30d") == 0
    out, err = capsys.readouterr()
    credential = out.strip()
    assert credential.startswith("pbt_") and "\n" not in credential
    assert "for alice: operator:deploy-*@staging, expires" in err and "shown only this once" in err

    assert await playbook_token("list", "--all") == 0
    out, _ = capsys.readouterr()
    assert "alice" in out and "operator:deploy-*@staging" in out and "admin, unsafe_shell" in out
    assert credential not in out


async def test_a_person_sees_their_own_tokens_and_may_not_issue_any(engine: Engine, capsys, monkeypatch) -> None:
    await playbook_token("create", "laptop", "--owner", "alice", "--grant", "viewer", "--json")
    created = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("PLAYBOOK_TOKEN", created["credential"])
    assert await playbook_token("list", "--json") == 0
    assert [t["owner"] for t in json.loads(capsys.readouterr().out)] == ["alice"]
    assert await playbook_token("create", "more", "--owner", "alice", "--grant", "admin") == 5   # denied
    assert "rejected (forbidden): alice may not create tokens for alice" in capsys.readouterr().err


async def test_a_revoked_token_is_refused_at_once(engine: Engine, capsys, monkeypatch) -> None:
    await playbook_token("create", "laptop", "--owner", "bob", "--json")
    created = json.loads(capsys.readouterr().out)
    assert await playbook_token("revoke", created["token"]["id"], "--reason", "laptop lost") == 0
    assert f"token {created['token']['id']} of bob revoked by root" in capsys.readouterr().out
    monkeypatch.setenv("PLAYBOOK_TOKEN", created["credential"])
    assert await playbook_token("list") == 5
    assert "rejected (unauthenticated): token" in capsys.readouterr().err


async def test_without_a_token_or_with_a_bad_grant_or_expiry_the_cli_says_what_to_do(engine: Engine,
                                                                                     monkeypatch, tmp_path) -> None:
    with pytest.raises(PlaybookError, match="unknown role 'boss'"):
        await playbook_token("create", "x", "--owner", "a", "--grant", "boss")
    with pytest.raises(PlaybookError, match="write a duration like 30d"):
        await playbook_token("create", "x", "--owner", "a", "--expires", "soon")
    monkeypatch.setenv("PLAYBOOK_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(PlaybookError, match="no API token: set PLAYBOOK_TOKEN, or start the engine here"):
        await playbook_token("list")


def test_expiry_durations() -> None:
    assert [parse_expiry(t) for t in ("600s", "45m", "12h", "30d", "never")] == [600, 2700, 43200, 2592000, None]


async def test_a_token_command_refused_at_the_cli_is_recorded_at_the_cli_door(engine: Engine, capsys,
                                                                              monkeypatch) -> None:
    """The audit says which door a refusal came by: the CLI's token commands were recorded as plain NATS."""
    await playbook_token("create", "laptop", "--owner", "victor", "--grant", "viewer", "--json")
    monkeypatch.setenv("PLAYBOOK_TOKEN", json.loads(capsys.readouterr().out)["credential"])
    assert await playbook_token("list", "--all") == 5
    refused = (await refusals(engine.nc))[-1]
    assert (refused.principal, refused.action, refused.door) == ("victor", "list_tokens", "cli")


async def test_an_expiry_beyond_the_calendar_is_refused_saying_so(engine: Engine, capsys) -> None:
    """`--expires 99999999d` was an internal error ("date value out of range")."""
    assert await playbook_token("create", "x", "--owner", "bob", "--expires", "99999999d") == 1
    err = capsys.readouterr().err
    assert "rejected (bad_request):" in err and "never" in err and "internal" not in err
