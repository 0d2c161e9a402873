"""docs/cli.md: every `playbook` command, its arguments and options, written from the CLI's argparse parser."""
from __future__ import annotations

import argparse

from app.docs.markdown import GENERATED, table
from services.settings import Settings
from ui.cli.main import parser
from ui.cli.render import EXIT_CODES, TAIL_LINES


def render() -> str:
    root = parser(Settings())
    commands = _subcommands(root)
    lines = [
        "# The `playbook` command", "", GENERATED, "",
        "`playbook COMMAND [arguments]` drives the engine: it finds NATS from `NATS_URL`, else from the URL file "
        "the embedded server leaves in `$PLAYBOOK_HOME` (see [configuration.md](configuration.md)), and acts as the "
        "holder of `$PLAYBOOK_TOKEN`, else of the local admin's token `playbook up` wrote to "
        "`$PLAYBOOK_HOME/credentials/token`. The actor recorded on every command is that token's owner; `--as "
        "PERSON` lets an admin act on someone's behalf, recorded as both (see [security.md](security.md)).", "",
        "`run`, `status` and `events` speak plain NATS themselves (`ui/cli/wire.py`: a few protocol lines over "
        "one socket, the run's stored events by direct gets, then its live ones from the feed), so they start without "
        "loading a NATS client library; over `tls://` or `ws://` URLs, with a playbook larger than one NATS "
        "message (uploaded first) and for `run --dry-run` they use nats-py, as every other command does. A "
        "follow whose NATS server goes away connects again for up to a minute and reads from the store what it "
        "missed (see [operations.md](operations.md#when-a-server-dies)).", "",
        "Commands: " + ", ".join(f"[{name}](#playbook-{name})" for name in commands) + ".", "",
        "## Output", "",
        "Without `--json`, output is for people: `run`, `retry`, `replay` and `status` show under each step the "
        f"last {TAIL_LINES} lines it printed (`| ` stdout, `! ` stderr; an http_request step its body), and "
        "`--output` shows all of them.", "",
        "With `--json`, every command prints JSON on stdout: one JSON document for a command that answers once "
        "(`status`, `list`, `circuits`, `validate`, `insights`, `token`, a command's reply, `run --detach`, "
        "`run --dry-run`, `replay`: the rebuilt state, as `status`), or JSON lines: one event per line for what "
        "follows a run (`run`, `retry`, `events`, `rollback --follow`), one output line (an attempt's end, a step's "
        "rollback output) per line for `logs`, one entry per line for `audit`; `up` logs as JSON lines on stderr and "
        "prints its sign-in link as `{\"sign_in\": URL}` on stdout. `schema` is always JSON. A refusal is the "
        "reply document `{\"accepted\": false, \"error\": {\"code\", \"message\", \"details\"}}`; a failure of "
        "the CLI itself (no engine, bad input) is `{\"error\": {\"code\", \"message\"}}`.", "",
        "## Exit codes", "",
    ]
    lines += table(("code", "means"), [(f"`{code}`", meaning) for code, meaning in EXIT_CODES.items()])
    lines += ["", "A closed pipe (`playbook events RUN --json | head`) and Ctrl-C end the command quietly, without "
              "a traceback.", "",
              "## Shell completion", "",
              "`playbook completion bash` and `playbook completion zsh` print completion scripts written from the "
              "same parser: `source <(playbook completion bash)` in `~/.bashrc`, or save the zsh one as `_playbook` "
              "in a directory of `$fpath`.", ""]
    for name, command in commands.items():
        lines += _command(name, command)
        for sub, helper in _subcommands(command).items():
            lines += _command(f"{name} {sub}", helper, level="###")
    return "\n".join(lines).rstrip() + "\n"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command(name: str, command: argparse.ArgumentParser, level: str = "##") -> list[str]:
    usage = " ".join(command.format_usage().removeprefix("usage: ").split())
    lines = [f"{level} playbook {name}", "", command.description or "", "", "```", usage, "```", ""]
    rows = []
    for action in command._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            rows += [(f"`{sub}`", "", helper.help or "")
                     for sub, helper in zip(action.choices, action._choices_actions)]
            continue
        written = ", ".join(f"`{flag}`" for flag in action.option_strings) or f"`{action.metavar or action.dest}`"
        takes = action.metavar or (action.dest.upper() if action.option_strings and action.nargs != 0 else "")
        choices = f"one of {', '.join(map(str, action.choices))}" if action.choices else ""
        default = f"default {action.default}" if action.option_strings and action.default not in (None, False, [], "") \
            and "default" not in (action.help or "") else ""
        meaning = "; ".join(part for part in (action.help or "", choices, default) if part)
        rows.append((written, f"`{takes}`" if takes and action.option_strings else "", meaning))
    return lines + table(("argument", "value", "what it does"), rows) + [""]
