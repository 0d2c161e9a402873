"""What every `playbook` command shares: -p values, playbook files, replies and their exit codes, JSON."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.errors import PlaybookError
from services.log_text import kinds_said
from ui.cli.exits import DENIED_CODES, EXIT_DENIED, EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE

if TYPE_CHECKING:
    from events.commands import Reply
    from services.fold import Run

# Rejections that mean the input was wrong and nothing was done: exit code 2, not 1.
INVALID_INPUT = frozenset({"invalid_playbook", "bad_request", "unknown_step", "unknown_playbook", "too_large"})


def run_id(text: str) -> str:
    """An argument that names a run: refused before anything is sent unless it is one (no `*`, `>` or `.`)."""
    from events import subjects   # here: `playbook --help` loads no msgspec
    try:
        return subjects.check_run_id(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def port(text: str) -> int:
    """A TCP port, 0 for any free one."""
    from services.settings import MAX_PORT
    if not text.isdecimal() or int(text) > MAX_PORT:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to {MAX_PORT}, not {text[:20]!r}")
    return int(text)


def step_id(text: str) -> str:
    from events import subjects
    if not subjects.valid_step_id(text):
        raise argparse.ArgumentTypeError(f"step id {text[:60]!r} must start with a letter or '_' and hold only "
                                         f"letters, digits, '-' and '_', at most {subjects.STEP_ID_MAX}")
    return text


def parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PlaybookError(f"-p {pair!r}: write parameters as key=value")
        if (key := key.strip()) in params:
            raise PlaybookError(f"-p {key} is given twice ({params[key]!r}, then {value!r}): give it once")
        params[key] = value
    return params


def person(text: str) -> str:
    """Whom `--as` names: not nobody (an empty name acted for no one, silently)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("--as needs a person's name")
    return text.strip()


def read_playbook(name: str) -> tuple[Path, str]:
    path = Path(name)
    try:
        return path, path.read_text(encoding="utf-8")
    except OSError as err:
        raise PlaybookError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise PlaybookError(f"{path}: not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x}): "
                            "a playbook is YAML in UTF-8") from None


def print_json(document: Any) -> None:
    """One JSON document (or one line of a stream of them) on stdout."""
    print(json.dumps(document, default=str), flush=True)


def no_run(args: argparse.Namespace, run: Run | None = None) -> int:
    """No such run; or (`run` folded) events are stored but its start is one this version cannot read."""
    if run is not None and run.quarantined:
        first = run.quarantined[0]
        return failed(args, "unreadable_run", f"run {args.run_id!r} has stored events, but not one this version "
                      f"can start it from: event {first.seq} ({first.event}): {first.reason}")
    return failed(args, "unknown_run", f"no run with id {args.run_id!r}")


def failed(args: argparse.Namespace, code: str, message: str, exit_code: int = EXIT_FAILED, prefix: str = "") -> int:
    """Say what failed, as `{"error": {"code", "message"}}` with --json, else on stderr; the exit code."""
    if getattr(args, "json", False):
        print_json({"error": {"code": code, "message": message}})
    else:
        print(prefix + message, file=sys.stderr)
    return exit_code


def reply_document(reply: Reply) -> dict[str, Any]:
    document = {"accepted": reply.accepted, "run_id": reply.run_id, "events": reply.events,
                "error": reply.error and {"code": reply.error.code, "message": reply.error.message,
                                          "details": reply.error.details}}
    return {**document, "warnings": reply.warnings} if reply.warnings else document


def reply_exit_code(reply: Reply) -> int:
    return 0 if reply.accepted else refusal_exit_code(reply.error.code if reply.error is not None else None)


def refusal_exit_code(code: str | None) -> int:
    """The exit code of a refusal, by its code (the README's table), whether it came back in a reply or was raised."""
    if code in DENIED_CODES:
        return EXIT_DENIED
    return EXIT_INVALID if code in INVALID_INPUT else EXIT_UNAVAILABLE if code == "unavailable" else EXIT_FAILED


def print_reply(reply: Reply, as_json: bool) -> int:
    if as_json:
        print_json(reply_document(reply))
    elif reply.accepted and reply.run_id is None:
        print(kinds_said(e["type"] for e in reply.events) or "nothing to do")
    elif reply.accepted:
        print(f"run {reply.run_id}: " + (kinds_said(e["type"] for e in reply.events) or "nothing to do (already so)"))
    elif reply.error is not None:
        print(f"rejected ({reply.error.code}): {reply.error.message}", file=sys.stderr)
        for detail in reply.error.details:
            if isinstance(detail, dict) and detail.get("message"):
                print(f"  {detail.get('code', '')} {detail['message']}".rstrip(), file=sys.stderr)
    return reply_exit_code(reply)
