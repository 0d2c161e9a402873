"""`playbook audit`: who did what to which run or breaker, and who was refused at which door.

A web server answers from its audit view, showing the caller what their token may read:
their runs' acts, and to admins refused access and the tokens issued and revoked.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from services.errors import PlaybookError
from ui.cli.connect import read
from ui.cli.exits import DENIED_CODES, EXIT_DENIED, EXIT_FAILED

if TYPE_CHECKING:
    from services.settings import Settings
    from ui.client import EngineClient

HELP = ("who did what, newest first, and who was refused access, given or stripped of a token, signed in (admins); "
        "a web server answers")
_UNITS = {"m": 60, "h": 3600, "d": 86400}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", help="only what this person did (or was refused), acting or acted for")
    parser.add_argument("--run", dest="run_id", help="only this run")
    parser.add_argument("--action", help="start, pause, approve, refused, ... (the dashboard's list)")
    parser.add_argument("--since", help="how far back: 30m, 12h, 7d")
    parser.add_argument("--limit", type=_limit, default=200, help="at most this many entries, 1 to 1000 (default 200)")
    parser.add_argument("--json", action="store_true", help="one JSON object per entry")


def since(text: str | None) -> str | None:
    if not text:
        return None
    from datetime import datetime, timedelta, timezone   # here: the CLI's parser reads this module, for every command
    amount, unit = text[:-1], text[-1:]
    if not (amount.isascii() and amount.isdigit() and len(amount) <= 6) or unit not in _UNITS:   # "²" is a digit
        raise PlaybookError(f"--since {text!r}: write a duration like 30m, 12h or 7d")
    return (datetime.now(timezone.utc) - timedelta(seconds=int(amount) * _UNITS[unit])).isoformat()


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    query = {"actor": args.actor, "run_id": args.run_id, "action": args.action, "since": since(args.since),
             "limit": args.limit}

    async def work(client: EngineClient) -> int:
        result = await client.audit({k: v for k, v in query.items() if v is not None})
        if not result.get("ok"):
            print(f"playbook audit: {result.get('error')}", file=sys.stderr)
            return EXIT_DENIED if result.get("code") in DENIED_CODES else EXIT_FAILED
        for entry in result["entries"]:
            print(json.dumps(entry) if args.json else line(entry))
        if not result["entries"] and not args.json:
            print("no entries match")
        return 0

    return read(settings, work)


def line(entry: dict[str, str]) -> str:
    who = entry["actor"] + (f" for {entry['on_behalf_of']}" if entry.get("on_behalf_of") else "")
    where = entry.get("run_id") or entry.get("circuit") or ""
    step = f"/{entry['step_id']}" if entry.get("step_id") else ""
    return f"{entry['at'][:19].replace('T', ' ')}  {who:<24} {entry['action']:<16} {where}{step}  {entry['detail']}"


def _limit(text: str) -> int:
    if not text.isdecimal() or not 1 <= int(text) <= 1000:      # the audit view's most (ui/web/api.py MAX_LIMIT)
        raise argparse.ArgumentTypeError(f"a number from 1 to 1000, not {text[:20]!r}")
    return int(text)
