"""`pause`, `resume`, `cancel`, `rollback`, `approve`, `reject`: steer a run; the reply says what happened."""
from __future__ import annotations

import argparse

from events.commands import ApproveStep, CancelRun, PauseRun, RejectStep, ResumeRun, RollbackRun
from services.settings import Settings
from ui.cli.common import print_reply
from ui.cli.connect import steer
from ui.cli.render import EXIT_FAILED, Follower
from ui.client import EngineClient

CONTROLS = {"pause": PauseRun, "resume": ResumeRun, "cancel": CancelRun, "rollback": RollbackRun}


def cmd_control(args: argparse.Namespace, settings: Settings) -> int:
    extra = {"reason": args.reason} if args.command != "resume" and args.reason else {}
    command = CONTROLS[args.command](run_id=args.run_id, **extra)

    async def work(client: EngineClient) -> int:
        reply = await client.send(command)
        if args.command != "rollback" or not reply.accepted or not args.follow:
            return print_reply(reply, args.json)
        follower = Follower(args.run_id, as_json=args.json)
        async for seq, event in client.follow(args.run_id, after_rollback_start=True):
            follower.show(seq, event)
        return 0 if follower.run.status == "rolled_back" else EXIT_FAILED

    return steer(args, settings, work)


def cmd_gate(args: argparse.Namespace, settings: Settings) -> int:
    kind = ApproveStep if args.command == "approve" else RejectStep
    command = kind(run_id=args.run_id, step_id=args.step_id, comment=args.comment)

    async def work(client: EngineClient) -> int:
        return print_reply(await client.send(command), args.json)

    return steer(args, settings, work)
