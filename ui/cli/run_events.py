"""`playbook events RUN [--follow]`: the run's events as stored, then (`--follow`) live ones until it ends.

Over the CLI's own connection (`ui.cli.wire`) where it can, through nats-py otherwise; a
breaker's history (`--circuit`) is read with the other readings (`ui.cli.reading`).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from events import subjects
from events.run import RunEvent
from services.settings import Settings
from ui.cli.common import no_run
from ui.cli.connect import plain_connection, run, with_client
from ui.cli.exits import EXIT_INVALID
from ui.cli.live_run import LiveRun, stored_events
from ui.cli.render import event_line, terminal_line

if TYPE_CHECKING:
    from ui.client import EngineClient


def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    if args.circuit:
        from ui.cli.reading import circuit_events
        return circuit_events(args, settings)
    if not args.run_id:
        print("playbook events: give a run id, or --circuit KEY", file=sys.stderr)
        return EXIT_INVALID
    if (connection := plain_connection(settings)) is not None:
        with contextlib.closing(connection):
            if args.follow and connection.last(subjects.RUNS_STREAM, subjects.run_all(args.run_id)) is None:
                return no_run(args)     # rather than wait for ever for a run that does not exist
            return _shown(LiveRun(connection, args.run_id, resolved=False).follow() if args.follow
                          else stored_events(connection, args.run_id, resolved=False), args)

    async def work(client: EngineClient) -> int:
        if not args.follow:
            return _shown(await client.events(args.run_id), args)
        if not await client.exists(args.run_id):
            return no_run(args)
        count = 0
        async for seq, event in client.follow(args.run_id):
            count += 1
            _print(seq, event, args)
        return 0 if count else no_run(args)

    return run(with_client(settings, work))


def _shown(events: Iterable[tuple[int, RunEvent]], args: argparse.Namespace) -> int:
    count = 0
    for seq, event in events:
        count += 1
        _print(seq, event, args)
    return 0 if count else no_run(args)


def _print(seq: int, event: RunEvent, args: argparse.Namespace) -> None:
    print(event_line(seq, event, terminal_line(event), args.json), flush=True)
