"""A secrets file the engine may not read: made for root only (as docs/security.md advises a root engine's to
be) while the engine runs as an ordinary user, as most users run it. The step that names a secret failed as
"the engine failed while running this step (PermissionError)", a traceback in the log; now it fails as
configuration, saying whose the file is and what to do."""
from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from services.embedded import free_port
from tests.e2e.conftest import ROOT, Processes, playbook_cli
from tests.helpers import until

pytestmark = pytest.mark.e2e

PLAYBOOK = """name: uses-a-secret
steps:
  - id: use
    action: shell
    timeout_seconds: 10
    args: {command: "echo $TOKEN", env: {TOKEN: "${secret:API_TOKEN}"}}
"""
# As root (CI), the engine runs without the capabilities that let root read any file: as an ordinary user would.
NOT_ALL_SEEING = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []


async def test_a_step_naming_a_secret_from_a_file_the_engine_cannot_read_fails_as_configuration_saying_why(
        tmp_path: Path, processes: Processes) -> None:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("API_TOKEN: for-someone-else-0001\n")
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(secrets, nobody.pw_uid, nobody.pw_gid)
    secrets.chmod(0o600 if os.geteuid() == 0 else 0)
    playbook = tmp_path / "uses-a-secret.yaml"
    playbook.write_text(PLAYBOOK)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "PLAYBOOK_"))}
    env.update(PYTHONUNBUFFERED="1", PLAYBOOK_NATS_PORT=str(free_port()), PLAYBOOK_HOME=str(tmp_path / ".playbook"),
               PLAYBOOK_SECRETS_FILE=str(secrets), PLAYBOOK_STEP_USER=os.environ.get("PLAYBOOK_STEP_USER", ""))
    log = processes.logs / "up.log"
    with open(log, "wb") as out:
        processes.started.append(subprocess.Popen(
            [*NOT_ALL_SEEING, sys.executable, "-m", "ui.cli.main", "up", "--http-port", "0"], env=env, cwd=ROOT,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    await until(lambda: "engine ready" in log.read_text(), timeout=60, what="playbook up ready")

    ran = playbook_cli("run", "--json", str(playbook), env=env)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    failed = [line for line in ran.stdout.splitlines() if '"StepFailed"' in line]
    assert len(failed) == 1 and '"category":"configuration"' in failed[0].replace(" ", ""), ran.stdout
    assert f"the secrets file {secrets} cannot be read by the engine" in failed[0], failed[0]
    assert "PermissionError" not in ran.stdout and "for-someone-else" not in ran.stdout
