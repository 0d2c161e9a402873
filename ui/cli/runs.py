"""`playbook run` and `playbook retry`: start a run, or send a failed one on, and follow it to its end."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from events import subjects
from events.codec import command_body, decode_reply
from events.commands import HEADROOM, Reply, RetryRun, StartRun
from events.run import RunRetried
from services.fold import dry_run_plan
from services.log_text import kinds_said
from services.settings import Settings
from ui.cli.common import parse_params, print_json, print_reply, read_playbook, reply_document
from ui.cli.connect import caller_headers_of, plain_connection, steer
from ui.cli.exits import EXIT_DENIED, EXIT_INVALID, EXIT_UNAVAILABLE
from ui.cli.live_run import LiveRun
from ui.cli.render import Follower, plan_table

if TYPE_CHECKING:   # nats-py loads only where the CLI's own connection cannot serve
    from services.playbook.diagnostics import Diagnostic
    from ui.cli.wire import Connection
    from ui.client import EngineClient

START_TIMEOUT = 120.0      # a big playbook's checks take their time


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The engine checks the playbook (once, where it counts) and answers with what is wrong or worth a warning."""
    options: dict[str, Any] = dict(
        parameters=parse_params(args.param), environment=args.env, run_id=args.run_id, dry_run=args.dry_run,
        allow_unsafe_shell=args.allow_unsafe_shell, on_failure=args.on_failure,
        approval_required=args.approval_required)
    if not Path(args.file).exists() and os.sep not in args.file and not args.file.endswith((".yaml", ".yml")):
        return _start(args, settings, StartRun(playbook_id=args.file, **options))
    path, text = read_playbook(args.file)
    return _start(args, settings, StartRun(playbook=text, source=str(path), **options))


def _not_started(reply: Reply, args: argparse.Namespace) -> int:
    """A playbook the engine found invalid: its problems at their lines, as `playbook validate` prints them."""
    assert reply.error is not None
    if args.json:
        print_json({"accepted": False, "run_id": None, "events": [], "error": {
            "code": reply.error.code, "message": reply.error.message, "details": reply.error.details}})
        return EXIT_INVALID
    diagnostics = [as_diagnostic(d) for d in reply.error.details]
    for diagnostic in diagnostics:
        print(diagnostic.format(), file=sys.stderr)
    print(f"{args.file}: not started: {len(diagnostics)} problem(s)", file=sys.stderr)
    return EXIT_INVALID


def as_diagnostic(found: object) -> Diagnostic:
    """A problem or warning the engine found, as `playbook validate` prints it (loaded when there is one)."""
    from services.playbook.diagnostics import Diagnostic
    return msgspec.convert(found, Diagnostic)


def _start(args: argparse.Namespace, settings: Settings, start: StartRun) -> int:
    """Start the run and follow it, as `playbook run` asks: over the CLI's own connection where it can, else
    (TLS or websockets, a playbook larger than a NATS message to upload, a dry run's plan) through nats-py."""
    headers, body = caller_headers_of(args, settings), command_body(start)
    if not args.dry_run and (connection := plain_connection(settings)) is not None:
        with contextlib.closing(connection):
            if len(body) <= connection.max_payload - HEADROOM:
                return _start_plain(connection, body, headers, args)

    async def work(client: EngineClient) -> int:
        reply = await client.send(start, timeout=START_TIMEOUT)
        if (code := _answered(reply, args)) is not None:
            return code
        assert reply.run_id is not None
        if args.dry_run:
            run = await client.run(reply.run_id)
            if args.json:
                print_json({**reply_document(reply), "plan": [asdict(p) for p in dry_run_plan(run)]})
            else:
                print(plan_table(run))
            return 0
        return await follow(client, reply.run_id, args)

    return steer(args, settings, work)


def _start_plain(connection: Connection, body: bytes, headers: dict[str, str], args: argparse.Namespace) -> int:
    reply = decode_reply(connection.request(subjects.command("StartRun"), body, START_TIMEOUT, headers).data)
    if (code := _answered(reply, args)) is not None:
        return code
    assert reply.run_id is not None
    follower = Follower(reply.run_id, as_json=args.json, full_output=args.output)
    for seq, event in LiveRun(connection, reply.run_id).follow():
        follower.show(seq, event)
    return follower.exit_code()


def _answered(reply: Reply, args: argparse.Namespace) -> int | None:
    """What `playbook run` shows of the engine's answer: the exit code, or None for a run to follow (or plan)."""
    if reply.error is not None and reply.error.code == "invalid_playbook":
        return _not_started(reply, args)
    if not reply.accepted or reply.run_id is None:
        code = print_reply(reply, args.json)
        return code if code in (EXIT_DENIED, EXIT_UNAVAILABLE) else EXIT_INVALID    # nothing was started
    if not args.json:       # JSON readers find them in the reply's document
        for warning in reply.warnings:
            print(as_diagnostic(warning).format(), file=sys.stderr)
    if args.dry_run:
        return None
    if args.detach:
        if args.json:
            print_json(reply_document(reply))
        else:
            print(reply.run_id)
        return 0
    if not args.json:
        print(f"run {reply.run_id}  (playbook events {reply.run_id} --follow, playbook cancel {reply.run_id})")
    return None


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    text, source = None, "<playbook>"
    if args.playbook:
        path, text = read_playbook(args.playbook)
        source = str(path)
    command = RetryRun(run_id=args.run_id, from_step=args.from_step,
                       parameters=parse_params(args.param), reason=args.reason, playbook=text, source=source)

    async def work(client: EngineClient) -> int:
        reply = await client.send(command)
        if not reply.accepted or args.detach:
            return _retried(reply, args)
        return await follow(client, args.run_id, args, retried=True)

    return steer(args, settings, work)


def _retried(reply: Reply, args: argparse.Namespace) -> int:
    if reply.accepted and not args.json:
        print(f"run {reply.run_id} retried: " + kinds_said(e["type"] for e in reply.events))
        return 0
    return print_reply(reply, args.json)


async def follow(client: EngineClient, run_id: str, args: argparse.Namespace, retried: bool = False) -> int:
    """Print the run live until it ends; its exit code. A `retried` run is shown from its latest
    retry on (what happened before is folded, not printed): it ended once before."""
    follower = Follower(run_id, as_json=args.json, full_output=getattr(args, "output", False))
    shown = client.follow(run_id, after_retry=retried, resolved=True)
    if retried:
        known = await client.events(run_id, resolved=True)
        since = max((seq for seq, event in known if isinstance(event, RunRetried)), default=1)
        for seq, event in known:
            if seq < since:
                follower.know(seq, event)
    async for seq, event in shown:
        follower.show(seq, event)
    return follower.exit_code()
