"""What `playbook token create|list|revoke` do: ask the identity service, print the answer."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable

import msgspec

from events.identity import TokenInfo
from services.errors import CommandRejected
from services.identity.authority import format_grant, parse_grant
from services.settings import Settings
from ui.cli.connect import steer
from ui.cli.exits import DENIED_CODES, EXIT_DENIED, EXIT_FAILED
from ui.cli.tokens import parse_expiry
from ui.client import EngineClient
from ui.identity_client import IdentityClient


def _run(args: argparse.Namespace, settings: Settings, work: Callable[[IdentityClient], Awaitable[int]]) -> int:
    async def with_identity(engine: EngineClient) -> int:
        assert engine.caller.credential is not None
        try:
            return await work(IdentityClient(engine.nc, engine.caller.credential, on_behalf_of=args.on_behalf_of,
                                             door=engine.caller.door))
        except CommandRejected as err:
            print(f"rejected ({err.code}): {err}", file=sys.stderr)
            return EXIT_DENIED if err.code in DENIED_CODES else EXIT_FAILED

    return steer(args, settings, with_identity)


def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    grants = [parse_grant(text) for text in args.grant]
    expires_in = parse_expiry(args.expires)

    async def work(client: IdentityClient) -> int:
        info, credential = await client.create(args.name, args.owner, grants, kind="agent" if args.agent else "person",
                                               expires_in_seconds=expires_in)
        if args.json:
            print(json.dumps({"token": msgspec.to_builtins(info), "credential": credential}))
            return 0
        print(f"token {info.id} for {info.owner}: {_grants(info)}, {_expiry(info)}", file=sys.stderr)
        print(credential)
        print("Keep it now: it is shown only this once (the engine stores only its hash).", file=sys.stderr)
        return 0

    return _run(args, settings, work)


def cmd_token_list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(client: IdentityClient) -> int:
        tokens = await client.list(args.owner, everyone=args.all, include_inactive=args.inactive)
        if args.json:
            print(json.dumps(msgspec.to_builtins(tokens)))
            return 0
        for t in tokens:
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}Z" if t.last_used_at else "never used"
            print(f"{t.id}  {t.status:<8} {t.owner:<16} {t.name:<24} {_grants(t):<32} {_expiry(t):<24} {used}")
        if not tokens:
            print("no tokens")
        return 0

    return _run(args, settings, work)


def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def work(client: IdentityClient) -> int:
        info = await client.revoke(args.token_id, args.reason)
        if args.json:
            print(json.dumps(msgspec.to_builtins(info)))
        elif info is not None:
            print(f"token {info.id} of {info.owner} revoked by {info.revoked_by} at {info.revoked_at:%Y-%m-%d %H:%M}Z")
        return 0

    return _run(args, settings, work)


def _grants(info: TokenInfo) -> str:
    return ", ".join(format_grant(g) for g in info.grants) or "no grants"


def _expiry(info: TokenInfo) -> str:
    return f"expires {info.expires_at:%Y-%m-%d %H:%M}Z" if info.expires_at else "never expires"
