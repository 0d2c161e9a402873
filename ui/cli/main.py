"""`playbook`: run playbooks, watch and steer runs, read their events."""
from __future__ import annotations

import argparse
import functools
import os
import sys

from typing import TYPE_CHECKING

from services.errors import CommandRejected, EngineUnavailable, PlaybookError
from ui.cli import audit as audit_command
from ui.cli import insights as insights_command
from ui.cli import tokens as token_commands
from ui.cli.lazy import Handler, Lazy
from ui.cli.exits import DENIED_CODES, EXIT_DENIED, EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE

if TYPE_CHECKING:
    from services.settings import Settings

def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from app.up import up
    return up(settings, demo=args.demo, http_port=settings.http_port if args.http_port is None else args.http_port)


# -- parser -----------------------------------------------------------------------------

AS_HELP = "act on behalf of this person (admins only; both are recorded, and a gate counts the person)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="playbook", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=help)
        cmd.set_defaults(handler=handler)
        return cmd

    up = add("up", cmd_up, "start the engine: embedded NATS (unless NATS_URL is set) and every service")
    up.add_argument("--demo", action="store_true", help="run an example playbook once ready")
    up.add_argument("--http-port", type=int, help="the dashboard's port (default $PLAYBOOK_HTTP_PORT, else 8080)")

    run = add("run", Lazy("runs", "cmd_run"), "start a run of a playbook and follow it live")
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
        control = add(name, Lazy("steering", "cmd_control"), help)
        control.add_argument("run_id")
        control.add_argument("--as", dest="as_user", metavar="PERSON", help=AS_HELP)
        control.add_argument("--reason", default="")
        control.add_argument("--json", action="store_true")
        if name == "rollback":
            control.add_argument("--follow", action="store_true", help="follow the rollback until it ends")

    for name, help in (("approve", "approve a step waiting at its approval gate"),
                       ("reject", "reject a step waiting at its approval gate: the step fails")):
        gate = add(name, Lazy("steering", "cmd_gate"), help)
        gate.add_argument("run_id")
        gate.add_argument("step_id")
        gate.add_argument("--as", dest="as_user", metavar="PERSON", help=AS_HELP)
        gate.add_argument("--comment", default="")
        gate.add_argument("--json", action="store_true")

    status = add("status", Lazy("reading", "cmd_status"), "show a run's state and steps")
    status.add_argument("run_id")
    status.add_argument("--json", action="store_true")

    listing = add("list", Lazy("reading", "cmd_list"), "list runs")
    listing.add_argument("--active", action="store_true", help="only running, paused or cancelling runs")
    listing.add_argument("--json", action="store_true")

    events = add("events", Lazy("reading", "cmd_events"), "print a run's raw event stream, or a circuit breaker's")
    events.add_argument("run_id", nargs="?")
    events.add_argument("--circuit", metavar="KEY",
                        help="a circuit breaker's history instead (keys: playbook circuits)")
    events.add_argument("--follow", action="store_true", help="keep printing until the run ends")
    events.add_argument("--json", action="store_true", help="one JSON object per line")

    replay = add("replay", Lazy("reading", "cmd_replay"),
                 "rebuild a run's state from its events alone and print the timeline")
    replay.add_argument("run_id")
    replay.add_argument("--json", action="store_true")

    validate = add("validate", Lazy("runs", "cmd_validate"), "check a playbook without running it")
    validate.add_argument("file")
    validate.add_argument("--env")
    validate.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    validate.add_argument("--json", action="store_true")

    circuits = add("circuits", Lazy("reading", "cmd_circuits"), "list circuit breakers and their state, or reset one")
    circuits.add_argument("--reset", metavar="KEY", help="close this breaker by hand (admin; recorded)")
    circuits.add_argument("--as", dest="as_user", metavar="PERSON", help=AS_HELP)
    circuits.add_argument("--json", action="store_true")

    projections = add("projections", Lazy("steering", "cmd_projections"),
                      "rebuild the web's views (run list, audit, metrics) from zero")
    projections.add_argument("action", choices=["rebuild"])
    projections.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the rebuild")
    projections.add_argument("--json", action="store_true")

    add("schema", Lazy("reading", "cmd_schema"), "print the JSON Schema of every event and command")
    insights_command.add_arguments(add("insights", insights_command.cmd_insights, insights_command.HELP))
    audit_command.add_arguments(add("audit", audit_command.cmd_audit, audit_command.HELP))
    token_commands.register(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    """The CLI's process edge: the settings are read from the environment here, once, after the arguments."""
    if not hasattr(argparse._, "cache_info"):  # type: ignore[attr-defined]
        # argparse asks gettext for every heading of every command, and gettext looks for catalogues on disk each
        # time: most of building the parser. A translation cannot change within a process, so each is looked up once.
        argparse._ = functools.cache(argparse._)  # type: ignore[attr-defined]
    args = parser().parse_args(argv)
    from services.settings import Settings
    try:
        settings = Settings.from_environ(os.environ)
    except PlaybookError as err:
        print(f"playbook: {err}", file=sys.stderr)
        sys.exit(EXIT_INVALID)
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
