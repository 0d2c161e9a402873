"""What several CLI commands share: reading a playbook file, `-p key=value`, printing a command's reply."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from events.commands import Reply
from services.errors import PlaybookError
from ui.cli.exits import DENIED_CODES, EXIT_DENIED, EXIT_FAILED, EXIT_UNAVAILABLE


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


def read_playbook(name: str) -> tuple[Path, str]:
    path = Path(name)
    try:
        return path, path.read_text()
    except OSError as err:
        raise PlaybookError(f"{path}: cannot read: {err.strerror}") from None
