"""`playbook run` and `playbook validate`: a playbook file, checked here, then started and followed."""
from __future__ import annotations

import argparse
import sys

from events.commands import StartRun
from services.playbook import PlaybookInvalid, load_playbook, validate_playbook
from services.settings import Settings
from ui.cli.common import parse_params, print_reply, read_playbook
from ui.cli.connect import steer
from ui.cli.exits import EXIT_DENIED, EXIT_INVALID
from ui.cli.render import Follower, plan_table
from ui.client import EngineClient


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    path, text = read_playbook(args.file)
    params = parse_params(args.param)
    try:
        loaded = load_playbook(text, str(path), parameters=params, environment=args.env,
                               allow_unsafe_shell=args.allow_unsafe_shell)
    except PlaybookInvalid as err:
        for diagnostic in err.diagnostics:
            print(diagnostic.format(), file=sys.stderr)
        print(f"{path}: not started: {len(err.diagnostics)} problem(s)", file=sys.stderr)
        return EXIT_INVALID
    for warning in loaded.warnings:
        if warning.severity in ("warning", "error"):
            print(warning.format(), file=sys.stderr)

    async def work(client: EngineClient) -> int:
        reply = await client.send(StartRun(playbook=text, source=str(path), parameters=params, environment=args.env,
                                           run_id=args.run_id, dry_run=args.dry_run,
                                           allow_unsafe_shell=args.allow_unsafe_shell))
        if not reply.accepted or reply.run_id is None:
            code = print_reply(reply, args.json)
            return code if code == EXIT_DENIED else EXIT_INVALID
        if args.dry_run:
            print(plan_table(await client.run(reply.run_id)))
            return 0
        if args.detach:
            print(reply.run_id)
            return 0
        if not args.json:
            print(f"run {reply.run_id}  (playbook events {reply.run_id} --follow, playbook cancel {reply.run_id})")
        follower = Follower(reply.run_id, as_json=args.json)
        async for seq, event in client.follow(reply.run_id):
            follower.show(seq, event)
        return follower.exit_code()

    return steer(args, settings, work)


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    path, text = read_playbook(args.file)
    params = parse_params(args.param) if args.param else None
    diagnostics = validate_playbook(text, str(path), parameters=params, environment=args.env)
    if args.json:
        import msgspec
        print(msgspec.json.encode(diagnostics).decode())
    else:
        for diagnostic in diagnostics:
            print(diagnostic.format())
    errors = sum(1 for d in diagnostics if d.severity == "error")
    if not args.json:
        print(f"{path}: {errors} error(s), {len(diagnostics) - errors} other finding(s)")
    return EXIT_INVALID if errors else 0
