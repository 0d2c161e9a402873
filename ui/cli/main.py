"""`playbook`: run playbooks, watch and steer runs, read their events."""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import sys
from typing import TYPE_CHECKING, Any

from services.errors import CommandRejected, EngineUnavailable, PlaybookError
from ui.cli import audit as audit_command
from ui.cli import insights as insights_command
from ui.cli import mcp as mcp_command
from ui.cli import tokens as token_commands
from ui.cli.common import failed, person, port, print_json, refusal_exit_code, run_id, step_id
from ui.cli.exits import (
    EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_UNAVAILABLE,
)
from ui.cli.lazy import Handler, Lazy

if TYPE_CHECKING:
    from services.settings import Settings

# Each command's handler is imported when it runs, so `playbook --help` loads no NATS, YAML or rules.
cmd_run, cmd_retry = (Lazy("runs", name) for name in ("cmd_run", "cmd_retry"))
cmd_validate = Lazy("validating", "cmd_validate")
cmd_control, cmd_gate, cmd_projections = (Lazy("steering", name) for name in ("cmd_control", "cmd_gate",
                                                                               "cmd_projections"))
cmd_status, cmd_events = Lazy("status", "cmd_status"), Lazy("run_events", "cmd_events")
cmd_list, cmd_logs, cmd_replay, cmd_circuits, cmd_schema = (
    Lazy("reading", name) for name in ("cmd_list", "cmd_logs", "cmd_replay", "cmd_circuits", "cmd_schema"))
cmd_publish, cmd_playbooks = (Lazy("catalog", name) for name in ("cmd_publish", "cmd_playbooks"))


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from app.up import up
    port = settings.http_port if args.http_port is None else args.http_port
    return up(settings, demo=args.demo, http_port=port, as_json=args.json, cluster=args.cluster)


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    from pathlib import Path

    from app.backup import backup
    done = asyncio.run(backup(settings, Path(args.directory)))
    if args.json:
        print_json(done)
        return 0
    print(f"backed up to {done['backup']} (private: it holds credentials and secrets)\n"
          f"  taken at {done['taken_at']}\n  streams (messages): {_streams(done)}\n  files: {', '.join(done['files'])}")
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    from pathlib import Path

    from app.restore import restore
    done = asyncio.run(restore(settings, Path(args.directory), force=args.force))
    if args.json:
        print_json(done)
        return 0
    print(f"restored {done['restored']} (taken at {done['taken_at']}) into {done['home']}\n"
          f"  streams (messages): {_streams(done)}")
    for kept_as, where in done["files"].items():
        print(f"  {kept_as}: {where}")
    for run in done["paused"]:
        print(f"  run {run} was running at the backup: paused; `playbook resume {run}` once the old engine is stopped")
    print("start the engine with `playbook up`")
    return 0


def _streams(done: dict[str, Any]) -> str:
    """A backup's or a restore's streams, each with how many messages it kept."""
    return ", ".join(f"{name} {count}" for name, count in done["streams"].items())


def cmd_completion(args: argparse.Namespace, settings: Settings) -> int:
    from ui.cli.completion import script   # the completion scripts' text: loaded for this command only
    print(script(parser(settings), args.shell), end="")
    return 0


# -- parser -----------------------------------------------------------------------------

AS_HELP = "act on behalf of this person (admins only; both are recorded, and a gate counts the person)"


class _Unbuilt(argparse.ArgumentParser):
    """Stands in for a command the CLI is not running: its arguments are not built (argparse pays per argument)."""

    def __init__(self) -> None:     # only add_argument is ever called on it
        pass

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        return None


def parser(settings: Settings | None = None, only: str | None = None) -> argparse.ArgumentParser:
    """The CLI's arguments; without `settings` (the CLI itself, which reads them after), defaults come later.

    `only`: the command about to run (`main`): the others' arguments are left out, most of the parser's
    cost; a word that names no command gets every command, for the error that lists them.
    """
    p = argparse.ArgumentParser(prog="playbook", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help: str, json_help: str | None = "print the answer as one JSON document"
            ) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return _Unbuilt()
        cmd = sub.add_parser(name, help=help, description=help)
        cmd.set_defaults(handler=handler)
        if json_help:
            cmd.add_argument("--json", action="store_true", help=json_help)
        return cmd

    def acting(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--as", dest="as_user", metavar="PERSON", type=person, help=AS_HELP)

    def showing_output(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--output", action="store_true", help="every line steps printed, not only the last ones")

    up = add("up", cmd_up, "start the engine: embedded NATS (unless NATS_URL is set) and every service",
             "log as JSON lines")
    up.add_argument("--demo", action="store_true", help="run an example playbook once ready")
    up.add_argument("--http-port", type=port, default=settings and settings.http_port, metavar="PORT",
                    help="the dashboard's port (default: $PLAYBOOK_HTTP_PORT or 8080)")
    up.add_argument("--cluster", type=int, default=0, metavar="N",
                    help="a JetStream cluster of N servers (3 or more) on this machine instead of one, streams at 3 "
                         "replicas; the servers' data in $PLAYBOOK_HOME/cluster")

    run = add("run", cmd_run, "start a run of a playbook (a file, or from the catalog) and follow it live",
              "events as JSON lines (with --detach or --dry-run: one JSON document)")
    run.add_argument("file", metavar="FILE|NAME[@VERSION]",
                     help="a YAML file, or a catalog playbook: its latest version, or the one named")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter's value")
    run.add_argument("--env", metavar="NAME", help="the playbook environment whose values apply")
    run.add_argument("--detach", action="store_true", help="print the run id and return at once")
    run.add_argument("--run-id", type=run_id, metavar="ID", help="choose the run id (letters, digits, - and _)")
    acting(run)
    showing_output(run)
    run.add_argument("--allow-unsafe-shell", action="store_true",
                     help="start even with security errors (PB4xx); recorded on the run")
    run.add_argument("--dry-run", action="store_true",
                     help="resolve and evaluate what can be, print the plan, run no action (recorded as a dry run)")
    run.add_argument("--on-failure", choices=("stop", "continue", "rollback"),
                     help="what a failed step does to this run, instead of the playbook's on_failure (recorded)")
    run.add_argument("--approval-required", action="store_true",
                     help="every step waits for an approval before it runs: its own gate, else one any approver "
                          "but you may give (recorded)")

    retry = add("retry", cmd_retry, "continue a failed or cancelled run in place: its failed step and everything "
                "after it run again, finished steps keep their outputs; follow it live",
                "events as JSON lines (with --detach: one JSON document)")
    retry.add_argument("run_id", type=run_id, metavar="RUN", help="the run's id")
    retry.add_argument("--from", dest="from_step", type=step_id, metavar="STEP",
                       help="run this step and everything downstream of it again (default: the failed steps)")
    retry.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                       help="correct a parameter's value (recorded on the run)")
    # A catalogued playbook's version would arrive here the same way: resolved at the door to its text and source.
    retry.add_argument("--playbook", metavar="FILE",
                       help="replace the pinned playbook with this one; steps that ran must stay as they ran")
    retry.add_argument("--reason", default="", help="why (recorded)")
    retry.add_argument("--detach", action="store_true", help="print the answer and return at once")
    acting(retry)
    showing_output(retry)

    for name, help in (("pause", "pause a run: no new steps start; running ones finish"),
                       ("resume", "resume a paused run"),
                       ("cancel", "cancel a run: running steps are killed"),
                       ("rollback", "roll back a failed, cancelled or completed run")):
        control = add(name, cmd_control, help,
                      "events as JSON lines with --follow, else one JSON document" if name == "rollback" else
                      "print the answer as one JSON document")
        control.add_argument("run_id", type=run_id, metavar="RUN", help="the run's id")
        acting(control)
        control.add_argument("--reason", default="", help="why (recorded)")
        if name == "rollback":
            control.add_argument("--follow", action="store_true", help="follow the rollback until it ends")

    for name, help in (("approve", "approve a step waiting at its approval gate"),
                       ("reject", "reject a step waiting at its approval gate: the step fails")):
        gate = add(name, cmd_gate, help)
        gate.add_argument("run_id", type=run_id, metavar="RUN", help="the run's id")
        gate.add_argument("step_id", type=step_id, metavar="STEP", help="the gated step")
        acting(gate)
        gate.add_argument("--comment", default="", help="recorded with the decision")

    status = add("status", cmd_status, "show a run's state, its steps and the last lines they printed")
    status.add_argument("run_id", type=run_id, metavar="RUN", help="the run's id")
    showing_output(status)

    listing = add("list", cmd_list, "list runs")
    listing.add_argument("--active", action="store_true", help="only running, paused or cancelling runs")

    events = add("events", cmd_events, "print a run's raw event stream, or a circuit breaker's", "JSON lines")
    events.add_argument("run_id", nargs="?", type=run_id, metavar="RUN", help="the run's id")
    events.add_argument("--circuit", metavar="KEY",
                        help="a circuit breaker's history instead (keys: playbook circuits)")
    events.add_argument("--follow", action="store_true", help="keep printing until the run ends")

    logs = add("logs", cmd_logs, "print the output lines of a run's steps from the first; --follow: then live ones; "
               "then what their rollback actions printed",
               "JSON lines: each line and each attempt's end, with its sequence in PB_LOGS; a step's rollback "
               "output as one RollbackOutput line")
    logs.add_argument("run_id", type=run_id, metavar="RUN", help="the run's id")
    logs.add_argument("step_id", nargs="?", type=step_id, metavar="STEP", help="only this step's output")
    logs.add_argument("--attempt", type=int, metavar="N", help="only this attempt of the step (1 is the first)")
    logs.add_argument("--follow", action="store_true",
                      help="then live lines until the attempt, the step or the run has ended")

    replay = add("replay", cmd_replay, "rebuild a run's state from its events alone and print the timeline",
                 "the rebuilt state as one JSON document, shaped as status --json")
    replay.add_argument("run_id", type=run_id, metavar="RUN", help="the run's id")
    showing_output(replay)

    validate = add("validate", cmd_validate, "check a playbook without running it; with --env or -p, it also "
                   "refuses what `playbook run` would refuse with them",
                   "the findings as one JSON document (a list)")
    validate.add_argument("file", help="the playbook's YAML file")
    validate.add_argument("--env", metavar="NAME", help="check a run in this environment, with -p's values if any")
    validate.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                          help="check a run with this parameter value; without --env and -p, what a run must be "
                               "given (a required parameter, --env for a variable only environments set) is an "
                               "info (PB505)")
    validate.add_argument("--insights", action="store_true",
                          help="also show what past runs of this playbook recommend (asks the running engine)")

    circuits = add("circuits", cmd_circuits, "list circuit breakers and their state, or reset one")
    circuits.add_argument("--reset", metavar="KEY", help="close this breaker by hand (admin; recorded)")
    acting(circuits)

    projections = add("projections", cmd_projections, "rebuild the web's views (run list, audit, metrics) from zero")
    projections.add_argument("action", choices=["rebuild"], help="what to do")
    projections.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                             help="seconds to wait for the rebuild")

    add("schema", cmd_schema, "print the JSON Schema of every event and command",
        "on one line (it is always JSON)")
    insights_command.add_arguments(add("insights", insights_command.cmd_insights, insights_command.HELP, None))
    audit_command.add_arguments(add("audit", audit_command.cmd_audit, audit_command.HELP, None))
    mcp_command.add_arguments(add("mcp", mcp_command.cmd_mcp, mcp_command.HELP, None))
    if only in (None, "token"):
        token_commands.register(sub)
    publish = add("publish", cmd_publish, "store a version of each playbook in the catalog (its `version:`, or "
                  "--version); the same text again is nothing new, other text under a published version is refused",
                  "one JSON object per published version")
    publish.add_argument("files", nargs="+", metavar="FILE",
                         help="playbook files; each is published under its own `name:`")
    publish.add_argument("--version", default="", help="the version to publish as (one file only); "
                                                       "default: the playbook's `version:`, else 1")
    acting(publish)
    playbooks = add("playbooks", cmd_playbooks, "the catalog: every playbook's latest version; NAME: its versions; "
                    "`show NAME[@VERSION]`: its YAML; `diff NAME V1 V2`: what changed")
    playbooks.add_argument("words", nargs="*", metavar="NAME", help="NAME | show NAME[@VERSION] | diff NAME V1 V2")
    backup = add("backup", cmd_backup, "copy the running engine's streams and its home's files into a new "
                 "directory (needs the engine's NATS login in $PLAYBOOK_HOME; the copy holds credentials: 0700)")
    backup.add_argument("directory", metavar="DIR", help="a directory that does not exist yet, or is empty")
    restore = add("restore", cmd_restore, "put a backup into $PLAYBOOK_HOME where no engine runs; runs that were "
                  "running at the backup are paused, their running steps recorded interrupted")
    restore.add_argument("directory", metavar="DIR", help="a directory `playbook backup` made")
    restore.add_argument("--force", action="store_true",
                         help="replace the streams and files already there (they are lost)")
    completion = add("completion", cmd_completion, "print a shell completion script: "
                     "source <(playbook completion bash)", None)
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell")
    if only is not None and only not in sub.choices:
        return parser(settings)
    return p


# -- the process edge ----------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    """The CLI's process edge: the settings are read from the environment here, once, after the arguments."""
    if not hasattr(argparse._, "cache_info"):  # type: ignore[attr-defined]
        # argparse asks gettext for every heading of every command, and gettext looks for catalogues on disk each
        # time: most of building the parser. A translation cannot change within a process, so each is looked up once.
        argparse._ = functools.cache(argparse._)  # type: ignore[attr-defined]
    argv = sys.argv[1:] if argv is None else argv
    args = _parsed(parser(only=argv[0] if argv and not argv[0].startswith("-") else None), argv)
    from services.settings import Settings
    try:
        settings = Settings.from_environ(os.environ)
    except PlaybookError as err:
        print(f"playbook: {err}", file=sys.stderr)
        sys.exit(EXIT_INVALID)
    sys.exit(run_command(args, settings))


def _parsed(cli: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """The arguments. Asked for --json, a usage error is said as the command's other failures are: one JSON
    document on stdout (exit 2), not argparse's text."""
    if "--json" not in argv:
        return cli.parse_args(argv)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return cli.parse_args(argv)
    except SystemExit as exited:
        if exited.code != EXIT_INVALID:
            sys.stderr.write(said.getvalue())
            raise
        message = said.getvalue().strip().splitlines()[-1].partition(": error: ")[2]
        print_json({"error": {"code": "invalid_input", "message": message}})
        raise


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """The command's exit code; the CLI's own failures said once, in JSON with --json, never as a traceback."""
    try:
        code: int = args.handler(args, settings)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`playbook events RUN --json | head`): nothing more to say, to anyone.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("playbook: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EngineUnavailable as err:
        return failed(args, "engine_unavailable", str(err), EXIT_UNAVAILABLE, prefix="playbook: ")
    except CommandRejected as err:
        return failed(args, err.code, str(err), refusal_exit_code(err.code),
                      prefix=f"playbook: rejected ({err.code}): ")
    except PlaybookError as err:
        return failed(args, "invalid_input", str(err), EXIT_INVALID, prefix="playbook: ")


if __name__ == "__main__":
    main()
