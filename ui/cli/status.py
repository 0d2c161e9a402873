"""`playbook status RUN`: the run folded from its stored events, as a table or as `run_view` JSON.

Over the CLI's own connection (no nats-py to load) where it can; through nats-py otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING

from services.fold import Run, fold
from services.settings import Settings
from ui.cli.common import no_run, print_json
from ui.cli.connect import plain_connection, run, with_client
from ui.cli.live_run import stored_events
from ui.cli.render import status_table

if TYPE_CHECKING:
    from ui.client import EngineClient


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    if (connection := plain_connection(settings)) is not None:
        with contextlib.closing(connection):
            return _status(fold(args.run_id, stored_events(connection, args.run_id)), args)

    async def work(client: EngineClient) -> int:
        return _status(await client.run(args.run_id), args)

    return run(with_client(settings, work))


def _status(state: Run, args: argparse.Namespace) -> int:
    if not state.exists:
        return no_run(args, state)
    if args.json:
        from projections.run_view import run_view   # the dashboard's view of a run: for --json only
        print_json(run_view(state))
    else:
        print(status_table(state, full_output=args.output))
    return 0
