"""The CLI starts fast because it loads only what the command needs: seen in what a fresh process imported."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs the CLI in a fresh interpreter, then prints which of the heavy modules it had loaded.
PROBE = """
import json, sys
from ui.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = ("nats", "aiohttp", "mcp", "yaml", "msgspec", "asyncio", "services.playbook.validate", "services.read",
         # what only some commands need: a dry run's plan (conditions, interpolation), the language's
         # diagnostics, redacting secrets (the executor's), the NATS users' permissions (the engine's start)
         "services.domain.run.dry_run", "services.playbook.diagnostics", "services.secrets.redaction",
         "services.identity.nats_users", "logging")   # logging: the engine's processes log; the CLI prints
print(json.dumps({"code": code, "loaded": [name for name in heavy if name in sys.modules]}))
"""


def cli_imports(*argv: str, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome["code"], set(outcome["loaded"])


def a_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_loads_no_nats_no_web_server_no_yaml() -> None:
    code, loaded = cli_imports("--help")
    assert code == 0
    assert loaded == set()


def test_a_command_help_loads_nothing_heavy_either() -> None:
    code, loaded = cli_imports("run", "--help")
    assert code == 0
    assert loaded == set()


@pytest.mark.parametrize("command", [("status", "some-run"), ("events", "some-run"),
                                     ("events", "some-run", "--follow")])
def test_reading_a_run_speaks_plain_nats_itself_without_nats_py_asyncio_or_the_language(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    code, loaded = cli_imports(*command, env={"NATS_URL": f"nats://127.0.0.1:{a_closed_port()}",
                                              "PLAYBOOK_HOME": str(tmp_path)})
    assert code == 4        # the engine is unreachable: it did try to connect
    assert loaded == {"msgspec"}


def test_a_tls_url_is_for_nats_py(tmp_path: Path) -> None:
    code, loaded = cli_imports("status", "some-run", env={"NATS_URL": f"tls://127.0.0.1:{a_closed_port()}",
                                                          "PLAYBOOK_HOME": str(tmp_path)})
    assert code == 4
    assert {"nats", "asyncio"} <= loaded
    assert not {"aiohttp", "mcp", "yaml", "services.playbook.validate"} & loaded


def test_starting_a_run_from_a_file_leaves_the_checks_to_the_engine(tmp_path: Path) -> None:
    book = tmp_path / "one.yaml"
    book.write_text("name: one\nsteps:\n  - id: a\n    action: noop\n")
    unreachable = {"NATS_URL": f"nats://127.0.0.1:{a_closed_port()}", "PLAYBOOK_HOME": str(tmp_path),
                   "PLAYBOOK_TOKEN": "pbt_unchecked"}
    code, loaded = cli_imports("run", str(book), env=unreachable)
    assert code == 4
    assert loaded == {"msgspec"}        # the CLI's own NATS connection: no nats-py, no asyncio


def test_validating_a_file_loads_the_language_but_no_nats_nor_the_read_side(tmp_path: Path) -> None:
    book = tmp_path / "one.yaml"
    book.write_text("name: one\nsteps:\n  - id: a\n    name: a\n    action: noop\n")
    code, loaded = cli_imports("validate", str(book), env={"PLAYBOOK_HOME": str(tmp_path)})
    assert code == 0
    assert "services.playbook.validate" in loaded
    assert not {"nats", "aiohttp", "asyncio", "services.read"} & loaded
