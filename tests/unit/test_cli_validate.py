"""`playbook validate` as a user types it: no engine, the exit code and lines `playbook run` would answer with."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ENVS = """\
name: envs
environments:
  prod: {region: eu}
  dev: {}
steps:
  - {id: a, name: a, action: noop, args: {message: "${region}"}}
  - {id: b, name: b, action: wait, args: {seconds: -5}}
"""


def validate(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ui.cli.main", "validate", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PLAYBOOK_HOME": str(home)})


def test_validate_with_an_environment_refuses_what_run_would(tmp_path: Path) -> None:
    book = tmp_path / "envs.yaml"
    book.write_text(ENVS)
    checked = validate(str(book), "--env", "dev", home=tmp_path)
    assert checked.returncode == 2, checked.stderr
    assert f"{book}:4:3: error PB308 environment 'dev' does not set 'region'" in checked.stdout
    assert f"{book}:7:52: error PB107 [step b] wait: 'seconds' must be a number >= 0, got -5" in checked.stdout
    book.write_text(ENVS.replace("seconds: -5", "seconds: 0"))
    fixed = validate(str(book), home=tmp_path)           # the file alone: fine, and what a run must be given
    assert fixed.returncode == 0, fixed.stderr
    assert "info PB505 'region' is a variable only environment prod sets; a run must choose one with --env" \
        in fixed.stdout
    assert fixed.stdout.endswith("0 error(s), 1 other finding(s)\n")
