"""`playbook`: run playbooks, watch and steer runs, read their events."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path


from events.commands import (
    ApproveStep, CancelRun, PauseRun, RejectStep, Reply, ResetCircuit, ResumeRun, RollbackRun, StartRun,
)
from events.circuit import CircuitEvent
from events.run import RunEvent
from events.schema import json_schema
from projections.sentences import circuit_sentence
from services.errors import CommandRejected, EngineUnavailable, PlaybookError
from services.playbook import PlaybookInvalid, load_playbook, validate_playbook
from services.settings import Settings
from ui.cli import audit as audit_command
from ui.cli import insights as insights_command
from ui.cli import tokens as token_commands
from ui.cli.connect import steer, with_client
from ui.cli.render import (
    DENIED_CODES, EXIT_DENIED, EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, Follower, event_json, plan_table,
    status_table, terminal_line,
)
from ui.client import EngineClient


def parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PlaybookError(f"-p {pair!r}: write parameters as key=value")
        params[key.strip()] = value
    return params


def print_reply(reply: Reply, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"accepted": reply.accepted, "run_id": reply.run_id, "events": reply.events,
                          "error": reply.error and {"code": reply.error.code, "message": reply.error.message}}))
    elif reply.accepted and reply.run_id is None:
        print(", ".join(e["type"] for e in reply.events) or "nothing to do")
    elif reply.accepted:
        print(f"run {reply.run_id}: " + (", ".join(e["type"] for e in reply.events) or "nothing to do (already so)"))
    elif reply.error is not None:
        print(f"rejected ({reply.error.code}): {reply.error.message}", file=sys.stderr)
    return exit_code(reply)


def exit_code(reply: Reply) -> int:
    code = reply.error.code if reply.error is not None else None
    if reply.accepted:
        return 0
    return EXIT_DENIED if code in DENIED_CODES else EXIT_UNAVAILABLE if code == "unavailable" else EXIT_FAILED


# -- commands ---------------------------------------------------------------------------

def read_playbook(name: str) -> tuple[Path, str]:
    path = Path(name)
    try:
        return path, path.read_text()
    except OSError as err:
        raise PlaybookError(f"{path}: cannot read: {err.strerror}") from None


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


def cmd_control(args: argparse.Namespace, settings: Settings) -> int:
    kinds = {"pause": PauseRun, "resume": ResumeRun, "cancel": CancelRun, "rollback": RollbackRun}
    extra = {"reason": args.reason} if args.command != "resume" and args.reason else {}
    command = kinds[args.command](run_id=args.run_id, **extra)

    async def work(client: EngineClient) -> int:
        reply = await client.send(command)
        if args.command != "rollback" or not reply.accepted or args.json or not args.follow:
            return print_reply(reply, args.json)
        follower = Follower(args.run_id)
        async for seq, event in client.follow(args.run_id, after_rollback_start=True):
            follower.show(seq, event)
        return 0 if follower.run.status == "rolled_back" else 1

    return steer(args, settings, work)


def cmd_gate(args: argparse.Namespace, settings: Settings) -> int:
    kind = ApproveStep if args.command == "approve" else RejectStep
    command = kind(run_id=args.run_id, step_id=args.step_id, comment=args.comment)

    async def work(client: EngineClient) -> int:
        return print_reply(await client.send(command), args.json)

    return steer(args, settings, work)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from projections.run_view import run_view

    async def work(client: EngineClient) -> int:
        run = await client.run(args.run_id)
        if not run.exists:
            print(f"no run with id {args.run_id!r}", file=sys.stderr)
            return 1
        print(json.dumps(run_view(run), default=str) if args.json else status_table(run))
        return 0

    return asyncio.run(with_client(settings, work))


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from projections.run_list import as_dict

    async def work(client: EngineClient) -> int:
        runs = [r for r in await client.list_runs() if r.active or not args.active]
        if args.json:
            print(json.dumps([as_dict(r) for r in runs], default=str))
            return 0
        for r in runs:
            dry = " (dry run)" if r.dry_run else ""
            print(f"{r.run_id:<18} {r.status:<11} {r.started_at:%Y-%m-%d %H:%M:%S}  {r.playbook}{dry}  by {r.actor}")
        if not runs:
            print("no active runs" if args.active else "no runs yet")
        return 0

    return asyncio.run(with_client(settings, work))


def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    if args.circuit:
        return _circuit_events(args, settings)
    if not args.run_id:
        print("playbook events: give a run id, or --circuit KEY", file=sys.stderr)
        return EXIT_INVALID

    async def work(client: EngineClient) -> int:
        source = client.follow(args.run_id) if args.follow else _aiter(await client.events(args.run_id))
        count = 0
        async for seq, event in source:
            count += 1
            print(_event_line(seq, event, terminal_line(event), args.json), flush=True)
        if not count:
            print(f"no run with id {args.run_id!r}", file=sys.stderr)
            return 1
        return 0

    return asyncio.run(with_client(settings, work))


def _circuit_events(args: argparse.Namespace, settings: Settings) -> int:
    """A breaker's history: every counted call and every transition, with its reason."""
    async def work(client: EngineClient) -> int:
        envelopes = await client.circuit_events(args.circuit)
        for seq, event in envelopes:
            print(_event_line(seq, event, circuit_sentence(event), args.json))
        if not envelopes:
            print(f"no circuit breaker {args.circuit!r}; `playbook circuits` lists them", file=sys.stderr)
            return 1
        return 0

    return asyncio.run(with_client(settings, work))


def _event_line(seq: int, event: RunEvent | CircuitEvent, sentence: str, as_json: bool) -> str:
    """One stored event: as JSON, or its sequence, time and type, then the sentence that tells it."""
    if as_json:
        return event_json(seq, event)
    return f"{seq:>8} {event.at:%H:%M:%S.%f} {type(event).__name__:<20} {sentence}"


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    async def work(client: EngineClient) -> int:
        envelopes = await client.events(args.run_id)
        if not envelopes:
            print(f"no run with id {args.run_id!r}", file=sys.stderr)
            return 1
        follower = Follower(args.run_id, as_json=args.json)
        for seq, event in envelopes:
            follower.show(seq, event)
        if not args.json:
            print()
            print(status_table(follower.run))
        return 0

    return asyncio.run(with_client(settings, work))


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    path, text = read_playbook(args.file)
    params = parse_params(args.param) if args.param else None
    diagnostics = validate_playbook(text, str(path), parameters=params, environment=args.env)
    if args.insights:
        diagnostics += insights_command.validation_advice(text, str(path), settings)
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


def cmd_circuits(args: argparse.Namespace, settings: Settings) -> int:
    async def work(client: EngineClient) -> int:
        if args.reset:
            return print_reply(await client.send(ResetCircuit(key=args.reset)), args.json)
        breakers = await client.circuits()
        if args.json:
            print(json.dumps([{"key": b.key, "state": b.state, "failures_in_a_row": b.failures,
                               "open_until": b.until and b.until.isoformat()} for b in breakers]))
            return 0
        for b in breakers:
            until = f" until {b.until:%H:%M:%S}Z" if b.state == "open" and b.until else ""
            why = f"  ({b.reason})" if b.state != "closed" and b.reason else ""
            print(f"{b.state:<10} {b.failures:>3} failures in a row  {b.key}{until}{why}")
        if not breakers:
            print("no circuit breakers yet")
        return 0

    return steer(args, settings, work) if args.reset else asyncio.run(with_client(settings, work))


def cmd_projections(args: argparse.Namespace, settings: Settings) -> int:
    """`projections rebuild`: every web server refolds its views from the first event."""
    async def work(client: EngineClient) -> int:
        result = await client.rebuild_projections(timeout=args.timeout)
        if args.json:
            print(json.dumps(result))
        elif result.get("ok"):
            print(f"rebuilt from the first event: {result['events']} events, {result['runs']} runs, "
                  f"position {result['position']}, in {result['seconds']} s")
        else:
            print(f"rebuild failed: {result.get('error')}", file=sys.stderr)
        return 0 if result.get("ok") else EXIT_DENIED if result.get("code") in DENIED_CODES else EXIT_FAILED

    return steer(args, settings, work)


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from app.up import up
    return up(settings, demo=args.demo, http_port=args.http_port)


async def _aiter(items: list[tuple[int, RunEvent]]) -> AsyncIterator[tuple[int, RunEvent]]:
    for item in items:
        yield item


# -- parser -----------------------------------------------------------------------------

AS_HELP = "act on behalf of this person (admins only; both are recorded, and a gate counts the person)"


def parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="playbook", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace, Settings], int], help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=help)
        cmd.set_defaults(handler=handler)
        return cmd

    up = add("up", cmd_up, "start the engine: embedded NATS (unless NATS_URL is set) and every service")
    up.add_argument("--demo", action="store_true", help="run an example playbook once ready")
    up.add_argument("--http-port", type=int, default=settings.http_port)

    run = add("run", cmd_run, "start a run of a playbook and follow it live")
    run.add_argument("file")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--env", help="the playbook environment whose parameter values apply")
    run.add_argument("--detach", action="store_true", help="print the run id and return at once")
    run.add_argument("--run-id", help="choose the run id (letters, digits, - and _)")
    run.add_argument("--as", dest="as_user", metavar="PERSON", help=AS_HELP)
    run.add_argument("--json", action="store_true", help="print events as JSON lines")
    run.add_argument("--allow-unsafe-shell", action="store_true",
                     help="start even with security errors (PB4xx); recorded on the run")
    run.add_argument("--dry-run", action="store_true",
                     help="resolve and evaluate what can be, print the plan, run no action (recorded as a dry run)")

    for name, help in (("pause", "pause a run: no new steps start; running ones finish"),
                       ("resume", "resume a paused run"),
                       ("cancel", "cancel a run: running steps are killed"),
                       ("rollback", "roll back a failed, cancelled or completed run")):
        control = add(name, cmd_control, help)
        control.add_argument("run_id")
        control.add_argument("--as", dest="as_user", metavar="PERSON", help=AS_HELP)
        control.add_argument("--reason", default="")
        control.add_argument("--json", action="store_true")
        if name == "rollback":
            control.add_argument("--follow", action="store_true", help="follow the rollback until it ends")

    for name, help in (("approve", "approve a step waiting at its approval gate"),
                       ("reject", "reject a step waiting at its approval gate: the step fails")):
        gate = add(name, cmd_gate, help)
        gate.add_argument("run_id")
        gate.add_argument("step_id")
        gate.add_argument("--as", dest="as_user", metavar="PERSON", help=AS_HELP)
        gate.add_argument("--comment", default="")
        gate.add_argument("--json", action="store_true")

    status = add("status", cmd_status, "show a run's state and steps")
    status.add_argument("run_id")
    status.add_argument("--json", action="store_true")

    listing = add("list", cmd_list, "list runs")
    listing.add_argument("--active", action="store_true", help="only running, paused or cancelling runs")
    listing.add_argument("--json", action="store_true")

    events = add("events", cmd_events, "print a run's raw event stream, or a circuit breaker's")
    events.add_argument("run_id", nargs="?")
    events.add_argument("--circuit", metavar="KEY",
                        help="a circuit breaker's history instead (keys: playbook circuits)")
    events.add_argument("--follow", action="store_true", help="keep printing until the run ends")
    events.add_argument("--json", action="store_true", help="one JSON object per line")

    replay = add("replay", cmd_replay, "rebuild a run's state from its events alone and print the timeline")
    replay.add_argument("run_id")
    replay.add_argument("--json", action="store_true")

    validate = add("validate", cmd_validate, "check a playbook without running it")
    validate.add_argument("file")
    validate.add_argument("--env")
    validate.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    validate.add_argument("--json", action="store_true")
    validate.add_argument("--insights", action="store_true",
                          help="also show what past runs of this playbook recommend (asks the running engine)")

    circuits = add("circuits", cmd_circuits, "list circuit breakers and their state, or reset one")
    circuits.add_argument("--reset", metavar="KEY", help="close this breaker by hand (admin; recorded)")
    circuits.add_argument("--as", dest="as_user", metavar="PERSON", help=AS_HELP)
    circuits.add_argument("--json", action="store_true")

    projections = add("projections", cmd_projections, "rebuild the web's views (run list, audit, metrics) from zero")
    projections.add_argument("action", choices=["rebuild"])
    projections.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the rebuild")
    projections.add_argument("--json", action="store_true")

    add("schema", cmd_schema, "print the JSON Schema of every event and command")
    insights_command.add_arguments(add("insights", insights_command.cmd_insights, insights_command.HELP))
    audit_command.add_arguments(add("audit", audit_command.cmd_audit, audit_command.HELP))
    token_commands.register(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    """The CLI's process edge: the settings are read from the environment here, once."""
    try:
        settings = Settings.from_environ(os.environ)
    except PlaybookError as err:
        print(f"playbook: {err}", file=sys.stderr)
        sys.exit(EXIT_INVALID)
    args = parser(settings).parse_args(argv)
    try:
        code = args.handler(args, settings)
    except EngineUnavailable as err:
        print(f"playbook: {err}", file=sys.stderr)
        code = EXIT_UNAVAILABLE
    except CommandRejected as err:
        print(f"playbook: rejected ({err.code}): {err}", file=sys.stderr)
        code = EXIT_DENIED if err.code in DENIED_CODES else EXIT_FAILED
    except PlaybookError as err:
        print(f"playbook: {err}", file=sys.stderr)
        code = EXIT_INVALID
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
