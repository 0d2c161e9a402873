"""What a user may mistype reaches the CLI's error path, never a traceback: a playbook file that is not UTF-8,
a port out of range (an option or a variable), a parameter given twice, `--as` nobody."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.errors import PlaybookError
from services.settings import Settings
from ui.cli.common import parse_params
from ui.cli.main import main, parser, run_command


def test_a_playbook_that_is_not_utf8_is_refused_as_invalid_input(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\nsteps:\n  - {id: a, action: noop}\n")
    args = parser().parse_args(["validate", str(latin), "--json"])
    assert run_command(args, Settings()) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "invalid_input" and "not UTF-8 text (byte 9 is 0xe9)" in error["message"]


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["up", "--http-port", port])
    assert exited.value.code == 2 and "a port is a number from 0 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize("variable", ["PLAYBOOK_HTTP_PORT", "PLAYBOOK_NATS_PORT", "PLAYBOOK_WEB_PORT",
                                      "PLAYBOOK_MCP_PORT"])
def test_a_port_variable_out_of_range_is_refused_by_name(variable: str) -> None:
    with pytest.raises(PlaybookError, match=f"{variable} must be a port, 0 to 65535, got 70000"):
        Settings.from_environ({variable: "70000"})


def test_a_parameter_given_twice_is_refused_not_overwritten() -> None:
    assert parse_params(["who=a", "when = now"]) == {"who": "a", "when": " now"}
    with pytest.raises(PlaybookError, match=r"-p who is given twice \('a', then 'b'\): give it once"):
        parse_params(["who=a", "who=b"])


@pytest.mark.parametrize("argv", [["pause", "r1", "--as", ""], ["token", "list", "--as", " "]])
def test_acting_for_nobody_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "--as needs a person's name" in capsys.readouterr().err


@pytest.mark.parametrize("limit", ["0", "-1", "1001"])
def test_an_audit_limit_outside_what_the_view_gives_is_a_usage_error(limit: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["audit", "--limit", limit])
    assert exited.value.code == 2 and "--limit: a number from 1 to 1000" in capsys.readouterr().err


def test_a_usage_error_asked_for_json_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["status", "bad id", "--json"])
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and err == ""
    assert json.loads(out) == {"error": {"code": "invalid_input", "message": "argument RUN: run id 'bad id' may hold "
                                         "only letters, digits, '-' and '_' (at most 64)"}}


@pytest.mark.parametrize("text", ["²d", "9999999999d", "١٢h", "12", "h"])
def test_an_audit_since_that_is_no_duration_is_refused_with_the_way_to_write_one(text: str) -> None:
    """"²" is a digit to str.isdigit, not to int(); ten digits of days overflow the clock: both crashed it."""
    from ui.cli.audit import since
    with pytest.raises(PlaybookError, match="write a duration like 30m, 12h or 7d"):
        since(text)
