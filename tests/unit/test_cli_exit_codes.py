"""The exit codes table, from what the engine answered or what went wrong to the number a script sees."""
from __future__ import annotations

import argparse
import json

import pytest

from events.commands import Reply, Rejection
from services.errors import AccessDenied, CommandRejected, EngineUnavailable, PlaybookError, UnknownPlaybook
from services.learning.errors import LearningRefused
from services.settings import Settings
from ui.cli.common import reply_exit_code
from ui.cli.main import run_command
from ui.cli.render import EXIT_CODES

ANSWERS = [
    ("illegal_transition", 1), ("unknown_run", 1), ("approval_refused", 1), ("internal_error", 1),
    ("invalid_playbook", 2), ("bad_request", 2), ("unknown_step", 2), ("unknown_playbook", 2), ("too_large", 2),
    ("unavailable", 4),
    ("unauthenticated", 5), ("forbidden", 5), ("forged_actor", 5), ("too_many_failures", 5),
]


@pytest.mark.parametrize("code, exit_code", ANSWERS)
def test_a_rejection_exits_with_the_code_the_table_gives_its_kind(code: str, exit_code: int) -> None:
    assert reply_exit_code(Reply(accepted=False, error=Rejection(code=code, message="no"))) == exit_code
    assert exit_code in EXIT_CODES


def test_an_accepted_command_exits_0() -> None:
    assert reply_exit_code(Reply(accepted=True, run_id="r1")) == 0


FAILURES = [
    (EngineUnavailable("no NATS server"), 4, "engine_unavailable"),
    (AccessDenied("no API token", "unauthenticated"), 5, "unauthenticated"),
    (CommandRejected("no such run", "unknown_run"), 1, "unknown_run"),
    (LearningRefused("unauthenticated", "the token is not valid"), 5, "unauthenticated"),   # `playbook insights`
    (LearningRefused("rebuilding", "the knowledge is being rebuilt"), 1, "rebuilding"),
    (UnknownPlaybook("no playbook nosuch in the catalog"), 2, "unknown_playbook"),    # `playbooks show nosuch`
    (PlaybookError("-p 'oops': write parameters as key=value"), 2, "invalid_input"),
    (KeyboardInterrupt(), 130, None),       # 141, a closed pipe, needs a real pipe: tests/e2e/test_cli_operator.py
]


@pytest.mark.parametrize("raised, exit_code, code", FAILURES, ids=[type(f[0]).__name__ for f in FAILURES])
def test_what_goes_wrong_in_a_command_is_said_once_and_exits_as_the_table_says(
        raised: BaseException, exit_code: int, code: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    def handler(_args: argparse.Namespace, _settings: Settings) -> int:
        raise raised

    assert run_command(argparse.Namespace(handler=handler, json=True), Settings()) == exit_code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code is not None:
        assert json.loads(out)["error"]["code"] == code
    else:
        assert out == ""
