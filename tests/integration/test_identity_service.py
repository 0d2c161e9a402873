"""The identity service over NATS: tokens created, listed and revoked by who the caller's token says they are."""
from __future__ import annotations

import contextlib
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import nats
import pytest

from events import subjects
from events.codec import encode
from events.identity import Grant, TokenCreated, caller_headers, decode_token_event
from services.errors import CommandRejected
from services.identity.bootstrap import ensure_local_admin
from services.identity.credentials import credentials_dir
from services.identity.principal import Acting
from services.identity.registry import TokenRegistry
from services.identity.service import IdentityService
from services.identity.sessions import Sessions
from services.identity.setup import Identity
from services.identity.store import IdentityStore
from services.identity.tokens import hash_secret, parse_credential
from services.identity.verifier import TokenVerifier
from ui.identity_client import IdentityClient

pytestmark = pytest.mark.integration

OPERATOR_ON_DEPLOYS = Grant(role="operator", playbooks=("deploy-*",), environments=("staging",))


@dataclass
class Engine:
    nc: nats.NATS
    store: IdentityStore
    registry: TokenRegistry
    admin: str          # the local admin's credential
    home: Path

    def client(self, credential: str, on_behalf_of: str | None = None) -> IdentityClient:
        return IdentityClient(self.nc, credential, on_behalf_of=on_behalf_of)


@contextlib.asynccontextmanager
async def identity_engine(url: str, home: Path) -> AsyncIterator[Engine]:
    """The identity service as the engine runs it, and the local admin bootstrapped in `home`."""
    nc = await nats.connect(url)
    groups = {"alice": ["ops-team"]}
    identity = await Identity.start(nc, lambda name: groups.get(name, []))
    service = IdentityService(nc, identity.store, identity.registry, identity.guard)
    await service.start()
    admin = await ensure_local_admin(home, identity.store, identity.registry, name="root",
                                     now=datetime.now(timezone.utc))
    try:
        yield Engine(nc, identity.store, identity.registry, admin.credential, home)
    finally:
        await service.stop()
        await identity.stop()
        await nc.close()


async def token_created(engine: Engine, token_id: str) -> TokenCreated:
    history, _ = await engine.store.events.load_aggregate(f"{subjects.token(token_id)}.>", decode_token_event)
    [created] = [event for _, event in history if isinstance(event, TokenCreated)]
    return created


@pytest.fixture
async def engine(nats_server, tmp_path: Path) -> AsyncIterator[Engine]:
    async with identity_engine(nats_server.url, tmp_path / "home") as running:
        yield running


async def test_the_local_admin_issues_a_scoped_token_that_works_at_once_and_is_shown_only_once(engine: Engine) -> None:
    info, alice = await engine.client(engine.admin).create("alice's laptop", "Alice", [OPERATOR_ON_DEPLOYS],
                                                            expires_in_seconds=3600)
    assert (info.owner, info.status, info.created_by) == ("alice", "active", "root")
    assert info.grants == (OPERATOR_ON_DEPLOYS,)
    assert alice.startswith(f"pbt_{info.id}_")
    [mine] = await engine.client(alice).list()
    assert mine.id == info.id and mine.expires_at is not None
    created = await token_created(engine, info.id)
    secret = parse_credential(alice)[1]
    assert created.actor == "root" and created.secret_hash == hash_secret(secret)
    assert secret.encode() not in encode(created)


async def test_a_token_secret_never_crosses_nats_in_clear(engine: Engine) -> None:
    seen: list[bytes] = []

    async def snoop(msg) -> None:
        seen.append(msg.data)

    snooper = await nats.connect(engine.nc.connected_url.geturl())
    await snooper.subscribe("_INBOX.>", cb=snoop)       # what any client with inbox rights could watch
    await snooper.flush()
    try:
        _, alice = await engine.client(engine.admin).create("alice", "alice", [Grant(role="viewer")])
        await snooper.flush()
    finally:
        await snooper.close()
    secret = parse_credential(alice)[1]
    assert seen and not any(secret.encode() in data for data in seen)


async def test_a_non_admin_may_not_issue_or_see_others_tokens_and_each_refusal_is_recorded(engine: Engine) -> None:
    _, alice = await engine.client(engine.admin).create("alice", "alice", [OPERATOR_ON_DEPLOYS])
    with pytest.raises(CommandRejected, match="alice may not create tokens for alice .*alice holds operator") as err:
        await engine.client(alice).create("more", "alice", [Grant(role="admin")])
    assert err.value.code == "forbidden"
    with pytest.raises(CommandRejected, match="alice may not list tokens of everyone"):
        await engine.client(alice).list(everyone=True)
    with pytest.raises(CommandRejected, match="alice may not list tokens of root"):
        await engine.client(alice).list("root")
    with pytest.raises(CommandRejected, match="only an admin may act on behalf of someone else"):
        await engine.client(alice, on_behalf_of="bob").list()
    refusals = await engine.store.js.pull_subscribe(subjects.REFUSAL_SUBJECTS, stream=subjects.ACCESS_STREAM)
    recorded = [json.loads(m.data) for m in await refusals.fetch(4, timeout=5)]
    assert [(r["principal"], r["door"], r["action"], r["code"]) for r in recorded] == [
        ("alice", "nats", "create_token", "forbidden"), ("alice", "nats", "list_tokens", "forbidden"),
        ("alice", "nats", "list_tokens", "forbidden"), ("alice", "nats", "list_tokens", "forbidden")]


async def test_admins_cannot_pass_on_unsafe_shell_they_do_not_hold(engine: Engine) -> None:
    _, deputy = await engine.client(engine.admin).create("deputy", "dana", [Grant(role="admin")])
    with pytest.raises(CommandRejected, match="dana may not grant unsafe_shell without holding it everywhere"):
        await engine.client(deputy).create("shell", "eve", [Grant(role="unsafe_shell")])
    info, _ = await engine.client(engine.admin).create("shell", "eve", [Grant(role="unsafe_shell")])
    assert info.grants == (Grant(role="unsafe_shell"),)


async def test_anyone_revokes_their_own_token_only_admins_revoke_others_and_it_stops_working(engine: Engine) -> None:
    alice_info, alice = await engine.client(engine.admin).create("alice", "alice", [Grant(role="viewer")])
    bob_info, bob = await engine.client(engine.admin).create("bob", "bob", [Grant(role="viewer")])
    with pytest.raises(CommandRejected, match="bob may not revoke tokens of alice"):
        await engine.client(bob).revoke(alice_info.id)
    revoked = await engine.client(bob).revoke(bob_info.id, reason="laptop lost")
    assert revoked is not None and (revoked.status, revoked.revoked_by) == ("revoked", "bob")
    with pytest.raises(CommandRejected, match=f"token {bob_info.id} was revoked by bob") as err:
        await engine.client(bob).list()
    assert err.value.code == "unauthenticated"
    again = await engine.client(engine.admin).revoke(bob_info.id)      # already revoked: nothing changes
    assert again is not None and again.revoked_by == "bob"
    assert [t.owner for t in await engine.client(engine.admin).list(everyone=True)] == ["root", "alice"]
    everything = await engine.client(engine.admin).list(everyone=True, include_inactive=True)
    assert [(t.owner, t.status) for t in everything] == [("root", "active"), ("alice", "active"), ("bob", "revoked")]


async def test_an_admin_acting_on_someones_behalf_is_recorded_as_both(engine: Engine) -> None:
    info, _ = await engine.client(engine.admin, on_behalf_of="Alice").create("for carol", "carol", [])
    created = await token_created(engine, info.id)
    assert (created.actor, created.on_behalf_of) == ("root", "alice")


async def test_no_token_a_forged_body_or_nonsense_is_refused_with_a_reason(engine: Engine) -> None:
    async def ask(name: str, body: bytes, headers: dict | None = None) -> dict:
        reply = await engine.nc.request(subjects.identity_command(name), body, timeout=5, headers=headers)
        return json.loads(reply.data)

    assert (await ask("ListTokens", b"{}"))["error"]["code"] == "unauthenticated"
    forged = await ask("ListTokens", json.dumps({"actor": "root"}).encode())
    assert forged["error"]["code"] == "bad_request" and "actor" in forged["error"]["message"]
    assert (await ask("ListTokens", b"[1,2]", caller_headers(engine.admin)))["error"]["code"] == "bad_request"
    assert (await ask("ListTokens", b"\xff", caller_headers(engine.admin)))["error"]["code"] == "bad_request"
    assert (await ask("Frobnicate", b"{}", caller_headers(engine.admin)))["error"]["code"] == "bad_request"
    unsealed = await ask("CreateToken", json.dumps({"name": "x", "owner": "bob"}).encode(),
                         caller_headers(engine.admin))
    assert unsealed["error"]["code"] == "bad_request" and "seal" in unsealed["error"]["message"]


async def test_the_local_admin_token_is_kept_owner_only_reused_while_valid_and_replaced_when_revoked(
        engine: Engine) -> None:
    folder = credentials_dir(engine.home)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "token").stat().st_mode) == 0o600
    assert (folder / "token").read_text().strip() == engine.admin
    now = datetime.now(timezone.utc)
    again = await ensure_local_admin(engine.home, engine.store, engine.registry, name="root", now=now)
    assert (again.credential, again.created) == (engine.admin, False)
    [root] = await engine.client(engine.admin).list()
    await engine.client(engine.admin).revoke(root.id)
    renewed = await ensure_local_admin(engine.home, engine.store, engine.registry, name="root", now=now)
    assert renewed.created and renewed.credential != engine.admin
    assert (folder / "token").read_text().strip() == renewed.credential
    assert [t.grants for t in await engine.client(renewed.credential).list()] == [
        (Grant(role="admin"), Grant(role="unsafe_shell"))]


async def test_a_session_is_listed_as_ended_with_the_token_it_was_opened_with(engine: Engine) -> None:
    """A dashboard session is refused once its token is revoked; the listing said it was still active."""
    alice_info, alice = await engine.client(engine.admin).create("alice", "alice", [Grant(role="viewer")])
    principal = await TokenVerifier(engine.registry, lambda name: []).verify(alice)
    await Sessions(engine.store, engine.registry).open(Acting(principal))

    def listed(tokens: list) -> list[tuple[str, str]]:
        return [(t.name, t.status) for t in tokens if t.owner == "alice"]
    shown = await engine.client(engine.admin).list(everyone=True, include_inactive=True)
    assert listed(shown) == [("alice", "active"), ("dashboard session", "active")]
    await engine.client(engine.admin).revoke(alice_info.id, reason="left")
    shown = await engine.client(engine.admin).list(everyone=True, include_inactive=True)
    assert listed(shown) == [("alice", "revoked"), ("dashboard session", "revoked")]
    assert listed(await engine.client(engine.admin).list(everyone=True)) == []
