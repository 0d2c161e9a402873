"""The identity service: answers `pb.cmd.identity.<Command>` to create, list and revoke tokens, and to open and
close dashboard sessions (a web server asks, with the token of the person signing in: it writes no token itself).

The caller is the token in the request's `Authorization` header, never a name in the body;
an admin may add `Playbook-On-Behalf-Of`. A new token's secret leaves the engine once,
sealed with the key the caller sent, and is stored only as a hash. At start, the service
makes sure its `$PLAYBOOK_HOME` holds a valid local admin token (the first admin of a new
engine, and the credential of the CLI on that machine).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.codec import decode_command, encode
from events.commands import Rejection
from events.identity import (
    AnyIdentityCommand, Caller, CloseSession, CreateToken, Door, IdentityCommand, IdentityReply, ListTokens,
    OpenSession, RecordUse, RevokeToken, TokenInfo,
)
from services.answering import Answering
from services.errors import AccessDenied, CommandRejected, EngineUnavailable, Forbidden
from services.identity.authority import Resource, may_grant
from services.identity.bootstrap import LocalAdmin, ensure_local_admin, local_admin_name
from services.identity.guard import Guard
from services.identity.names import InvalidName, normalise_name
from services.identity.principal import Acting
from services.identity.registry import TokenRegistry
from services.identity.sealing import seal
from services.identity.sessions import Sessions
from services.identity.store import IdentityStore
from services.identity.tokens import (
    TokenRecord, create, credential, hash_secret, new_secret, new_token_id, parse_credential, revoke,
)
from services.identity.verifier import utcnow

log = logging.getLogger(__name__)

QUEUE = "identity-commands"
AT_ONCE = 32


def rejected(code: str, message: str) -> IdentityReply:
    return IdentityReply(accepted=False, error=Rejection(code=code, message=message))


class IdentityService:
    def __init__(self, nc: NATS, store: IdentityStore, registry: TokenRegistry, guard: Guard, *,
                 sessions: Sessions | None = None, home: Path | None = None, admin_name: str | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.nc, self.store, self.registry, self.guard, self.clock = nc, store, registry, guard, clock
        self.sessions = sessions or Sessions(store, registry, clock=clock)
        self.home, self.admin_name = home, admin_name
        self.local_admin: LocalAdmin | None = None
        self.requests = Answering(nc, subjects.IDENTITY_COMMAND_SUBJECTS, QUEUE, self._answer, at_once=AT_ONCE)

    async def start(self) -> None:
        if self.home is not None:
            self.local_admin = await ensure_local_admin(self.home, self.store, self.registry,
                                                        name=local_admin_name(self.admin_name), now=self.clock())
            if self.local_admin.created:
                log.info("local admin %s: token written to %s", self.local_admin.name,
                         self.home / "credentials" / "token")
        await self.requests.start()

    async def stop(self, grace: float = 10.0) -> None:
        await self.requests.stop(grace)

    async def _answer(self, msg: Msg) -> None:
        name = msg.subject.rsplit(".", 1)[-1]
        try:
            command = decode_command(name, msg.data, AnyIdentityCommand)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            reply = rejected("bad_request", f"cannot read {name} command: {err}")
        else:
            caller = Caller.of(msg.headers)      # the door a forwarding client names, for the refusal's record
            reply = await self.handle(command, caller.credential, on_behalf_of=caller.on_behalf_of, door=caller.door)
        if msg.reply:
            await self.nc.publish(msg.reply, encode(reply))

    async def handle(self, command: IdentityCommand, credential: str | None, *, on_behalf_of: str | None = None,
                     door: Door = "nats", source: str = "") -> IdentityReply:
        """Carry out one identity command for the holder of `credential`."""
        try:
            acting = await self.guard.authenticate(credential, door=door, action=_action(command),
                                                   source=source, on_behalf_of=on_behalf_of)
            match command:
                case CreateToken():
                    return await self._create(acting, command, door, source)
                case RevokeToken():
                    return await self._revoke(acting, command, door, source)
                case ListTokens():
                    return await self._list(acting, command, door, source)
                case OpenSession():
                    return await self._open_session(acting, command, door, source)
                case RecordUse():
                    return IdentityReply(accepted=True)     # verifying the credential recorded its use
                case CloseSession():
                    record = await self.sessions.close(acting)
                    return IdentityReply(accepted=True, token=record.info(self.clock()) if record else None)
        except EngineUnavailable as err:
            return rejected("unavailable", str(err))
        except AccessDenied as err:
            return rejected(err.code, str(err))
        except CommandRejected as err:
            return rejected(err.code, str(err))
        except Exception as err:
            log.exception("identity command %s failed", type(command).__name__)
            return rejected("internal_error", f"the engine could not carry out the command: {err}")
        return rejected("bad_request", f"unknown command {type(command).__name__}")

    async def _create(self, acting: Acting, cmd: CreateToken, door: Door, source: str) -> IdentityReply:
        await self.guard.permit(acting, "create_token", Resource(owner=cmd.owner), door=door, source=source)
        for grant in cmd.grants:
            if not (decision := may_grant(acting.principal, grant)).allowed:
                raise await self.guard.forbid(acting, decision.reason, door=door, action="create_token",
                                              target=f"tokens of {cmd.owner}", source=source)
        if cmd.seal is None:
            raise CommandRejected("send a `seal` (64 random hex digits) so that the new secret never travels in clear",
                                  "bad_request")
        token_id, secret = new_token_id(), new_secret()
        now = self.clock()
        _, last = await self.store.change(token_id, lambda existing: create(
            existing, cmd, token_id=token_id, secret_hash=hash_secret(secret), by=acting, at=now))
        await self.registry.caught_up(last)
        record = self.registry.get(token_id)
        assert record is not None
        log.info("token %s (%s) for %s created by %s", token_id, cmd.name, record.owner, acting.actor)
        return IdentityReply(accepted=True, token=record.info(now),
                             sealed_secret=seal(cmd.seal, credential(token_id, secret)))

    async def _revoke(self, acting: Acting, cmd: RevokeToken, door: Door, source: str) -> IdentityReply:
        record = self.registry.get(cmd.token_id)
        await self.guard.permit(acting, "revoke_token", Resource(owner=record.owner if record else None),
                                door=door, source=source)
        now = self.clock()
        events, last = await self.store.change(cmd.token_id, lambda current: revoke(current, cmd, by=acting, at=now))
        await self.registry.caught_up(last)
        record = self.registry.get(cmd.token_id)
        if events:
            log.info("token %s revoked by %s", cmd.token_id, acting.actor)
        return IdentityReply(accepted=True, token=record.info(now) if record else None)

    async def _list(self, acting: Acting, cmd: ListTokens, door: Door, source: str) -> IdentityReply:
        owner = None if cmd.everyone else _name(cmd.owner) if cmd.owner else acting.effective
        await self.guard.permit(acting, "list_tokens", Resource(owner=owner), door=door, source=source)
        now = self.clock()
        tokens = [self._info(r, now) for r in self.registry.tokens() if owner is None or r.owner == owner]
        if not cmd.include_inactive:
            tokens = [t for t in tokens if t.status == "active"]
        return IdentityReply(accepted=True, tokens=tokens)


    async def _open_session(self, acting: Acting, cmd: OpenSession, door: Door, source: str) -> IdentityReply:
        try:
            session = await self.sessions.open(acting)
        except Forbidden as refused:
            raise await self.guard.forbid(acting, str(refused), door=door, action="sign_in", target="",
                                          source=source) from None
        record = self.registry.get(parse_credential(session)[0])
        assert record is not None      # open waits until the registry holds it
        log.info("dashboard session %s opened for %s", record.id, acting.actor)
        return IdentityReply(accepted=True, token=record.info(self.clock()), sealed_secret=seal(cmd.seal, session))

    def _info(self, record: TokenRecord, now: datetime) -> TokenInfo:
        """What a listing shows of a token; a session ends with the token it was opened with, so it shows that."""
        info = record.info(now)
        parent = self.registry.get(record.created.parent) if record.created.parent else None
        if info.status == "active" and parent is not None and parent.status(now) != "active":
            return msgspec.structs.replace(info, status=parent.status(now))
        return info

def _name(raw: str) -> str:
    try:
        return normalise_name(raw)
    except InvalidName as err:
        raise CommandRejected(str(err), "bad_request") from None


def _action(command: IdentityCommand) -> str:
    return {CreateToken: "create_token", RevokeToken: "revoke_token", ListTokens: "list_tokens",
            OpenSession: "sign_in", CloseSession: "sign_out", RecordUse: "record_use"}[type(command)]
