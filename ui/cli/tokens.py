"""`playbook token create|list|revoke`: API tokens, managed through the identity service.

The caller is `$PLAYBOOK_TOKEN`, else the local admin's token that `playbook up` wrote to
`$PLAYBOOK_HOME/credentials/token` (ui/cli/connect.py). A new credential is printed once,
alone on stdout (details go to stderr), so `TOKEN=$(playbook token create ...)` keeps it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Awaitable, Callable

import msgspec

from events.identity import TokenInfo
from services.errors import CommandRejected, PlaybookError
from services.identity.authority import format_grant, parse_grant
from services.settings import Settings
from ui.cli.connect import steer
from ui.cli.render import DENIED_CODES, EXIT_DENIED, EXIT_FAILED
from ui.client import EngineClient
from ui.identity_client import IdentityClient

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `token` and its actions to the CLI's subcommands."""
    token = sub.add_parser("token", help="create, list and revoke API tokens", description=__doc__)
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="issue a token (admin); the credential is shown once",
                                description="issue a token (admin); the credential is printed once, alone on stdout")
    create.add_argument("name", help="what the token is for, e.g. 'ci deploys'")
    create.add_argument("--owner", required=True, help="the person or agent who will use it")
    create.add_argument("--grant", action="append", default=[], metavar="ROLE[:PLAYBOOKS][@ENVIRONMENTS]",
                        help="e.g. operator:deploy-*@staging; roles: viewer, operator, approver, admin, unsafe_shell")
    create.add_argument("--agent", action="store_true", help="the owner is an agent, not a person")
    create.add_argument("--expires", default="90d", help="30d, 12h, 45m, 600s or never (default 90d)")
    create.set_defaults(handler=cmd_token_create)

    listing = actions.add_parser("list", help="your tokens, someone's (--owner) or everyone's (--all)",
                                 description="your tokens, someone's (--owner) or everyone's (--all)")
    listing.add_argument("--owner", help="this person's or agent's tokens (admin, unless it is you)")
    listing.add_argument("--all", action="store_true", help="every owner's tokens (admin)")
    listing.add_argument("--inactive", action="store_true", help="include revoked and expired tokens")
    listing.set_defaults(handler=cmd_token_list)

    revoke = actions.add_parser("revoke", help="revoke a token for good (yours, or anyone's as admin)",
                                description="revoke a token for good (yours, or anyone's as admin): refused "
                                            "everywhere within a second")
    revoke.add_argument("token_id", help="the token's id (`playbook token list` shows them)")
    revoke.add_argument("--reason", default="", help="why (recorded)")
    revoke.set_defaults(handler=cmd_token_revoke)

    for action in (create, listing, revoke):
        action.add_argument("--as", dest="on_behalf_of", metavar="PERSON",
                            help="act on behalf of this person (admin; both recorded)")
        action.add_argument("--json", action="store_true", help="the answer as one JSON document")


def parse_expiry(text: str) -> float | None:
    """Seconds until a token expires, None for `never`."""
    if text == "never":
        return None
    found = _DURATION.fullmatch(text.strip())
    if found is None or int(found[1]) == 0:
        raise PlaybookError(f"--expires {text!r}: write a duration like 30d, 12h, 45m, 600s, or never")
    return int(found[1]) * _UNIT_SECONDS[found[2]]


def _run(args: argparse.Namespace, settings: Settings, work: Callable[[IdentityClient], Awaitable[int]]) -> int:
    async def with_identity(engine: EngineClient) -> int:
        assert engine.caller.credential is not None
        try:
            return await work(IdentityClient(engine.nc, engine.caller.credential, on_behalf_of=args.on_behalf_of))
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
