"""`list`, `events --circuit`, `events`, `logs`, `replay`, `circuits`: what the engine holds, read and shown."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime, timezone

import msgspec

from events.commands import ResetCircuit
from events.output import OutputLine
from events.schema import json_schema
from projections.run_list import as_dict
from projections.run_view import run_view
from projections.sentences import circuit_sentence
from services.playbook.diagnostics import listing
from services.read import Run, fold
from services.settings import Settings
from ui.cli.common import failed, no_run, print_json, print_reply
from ui.cli.connect import steer, with_client
from ui.cli.exits import EXIT_INVALID
from ui.cli.render import Follower, breaker_line, event_line, list_line, status_table, undo_lines
from ui.cli.terminal import shown
from ui.client import EngineClient


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(client: EngineClient) -> int:
        runs = [r for r in await client.list_runs() if r.active or not args.active]
        if args.json:
            print_json([as_dict(r) for r in runs])
            return 0
        for r in runs:
            print(list_line(r))
        if not runs:
            print("no active runs" if args.active else "no runs yet")
        return 0

    return asyncio.run(with_client(settings, work))


def circuit_events(args: argparse.Namespace, settings: Settings) -> int:
    """A breaker's history: every counted call and every transition, with its reason."""
    async def work(client: EngineClient) -> int:
        envelopes = await client.circuit_events(args.circuit)
        for seq, event in envelopes:
            print(event_line(seq, event, circuit_sentence(event), args.json))
        if not envelopes:
            return failed(args, "unknown_circuit",
                          f"no circuit breaker {args.circuit!r}; `playbook circuits` lists them")
        return 0

    return asyncio.run(with_client(settings, work))


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    async def work(client: EngineClient) -> int:
        envelopes = await client.events(args.run_id, resolved=True)
        if not envelopes or not (folded := fold(args.run_id, envelopes)).exists:
            return no_run(args, folded if envelopes else None)
        if args.json:                      # the rebuilt state, shaped as `status --json`
            print_json(run_view(folded))
            return 0
        follower = Follower(args.run_id, full_output=args.output)
        for seq, event in envelopes:
            follower.show(seq, event)
        print()
        print(status_table(follower.run))
        return 0

    return asyncio.run(with_client(settings, work))


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    """Output lines of a run's attempts from the first; with --follow, then live ones until the end."""
    if problem := _logs_problem(args):
        return failed(args, "bad_request", f"playbook logs: {problem}", EXIT_INVALID)

    async def work(client: EngineClient) -> int:
        if args.step_id is None:
            if not await client.exists(args.run_id):
                return no_run(args)
        else:
            run = await client.run(args.run_id)
            if not run.exists:
                return no_run(args)
            if problem := _no_such_attempt(run, args.step_id, args.attempt, args.follow):
                return failed(args, "unknown_step", f"playbook logs: {problem}", EXIT_INVALID)
        lines = 0
        async for seq, item in client.logs(args.run_id, args.step_id, args.attempt, follow=args.follow):
            lines += isinstance(item, OutputLine)
            if args.json:
                print(json.dumps({"seq": seq, **msgspec.to_builtins(item)}), flush=True)
            elif isinstance(item, OutputLine):
                print(shown(item.text) if args.step_id else f"{item.step_id}#{item.attempt} {shown(item.text)}",
                      flush=True)
        if not lines and not args.follow and _printed(await client.run(args.run_id), args.step_id):
            print(f"no output lines kept of run {args.run_id} (they are kept a week, and engines before PB_LOGS kept "
                  f"none): the head of what each attempt printed is on its event, `playbook status {args.run_id} "
                  "--output`", file=sys.stderr)
        if args.attempt is None and await client.rolled_back_any(args.run_id):   # folded only then
            _print_undone(await client.run(args.run_id), args.step_id, args.json)
        return 0

    return asyncio.run(with_client(settings, work))


def _printed(run: Run, step_id: str | None) -> bool:
    """Whether a step's event holds what its last attempt printed (lines of which `logs` found none)."""
    return any(run.steps[step].attempt.outputs.get(stream) for step in ([step_id] if step_id else run.specs)
               for stream in ("stdout", "stderr"))


def _print_undone(run: Run, step_id: str | None, as_json: bool) -> None:
    """What the steps' rollback actions printed: kept in the run's events, not streamed as the steps' own lines."""
    for step in [step_id] if step_id else list(run.specs):
        undone = run.steps[step].rollback
        if not undone.outputs:
            continue
        if as_json:
            print(json.dumps({"type": "RollbackOutput", "run_id": run.id, "step_id": step, "attempt": undone.attempt,
                              "actions": undone.outputs}), flush=True)
            continue
        for line in undo_lines(undone.outputs, full=True, indent=""):
            print(line if step_id else f"{step}#rollback {line.removeprefix('rollback ')}", flush=True)


def _no_such_attempt(run: Run, step_id: str, attempt: int | None, follow: bool) -> str:
    """Why the run cannot have lines of this step (or attempt): said, rather than printing nothing. Following, an
    attempt still to come is waited for."""
    if step_id not in run.specs:
        return f"run {run.id} has no step {step_id!r}; its steps: {listing(run.specs)}"
    made = run.steps[step_id].attempt.number
    if attempt is not None and attempt > made and not follow:
        return f"step {step_id} of run {run.id} has had {made} attempt(s), not {attempt}"
    return ""


def _logs_problem(args: argparse.Namespace) -> str:
    """What the arguments cannot say alone (run and step ids are checked as they are parsed)."""
    if args.attempt is not None and (args.step_id is None or args.attempt < 1):
        return "--attempt N needs a STEP, and N is 1 or more"
    return ""


def cmd_circuits(args: argparse.Namespace, settings: Settings) -> int:
    async def work(client: EngineClient) -> int:
        if args.reset:
            return print_reply(await client.send(ResetCircuit(key=args.reset)), args.json)
        breakers = await client.circuits()
        if args.json:
            print_json([{"key": b.key, "state": b.state, "failures_in_a_row": b.failures,
                         "open_until": b.until and b.until.isoformat()} for b in breakers])
            return 0
        now = datetime.now(timezone.utc)
        for b in breakers:
            print(breaker_line(b, now))
        if not breakers:
            print("no circuit breakers yet")
        return 0

    return steer(args, settings, work) if args.reset else asyncio.run(with_client(settings, work))


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(json_schema(), indent=None if args.json else 2))
    return 0
