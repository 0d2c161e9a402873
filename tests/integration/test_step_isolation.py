"""What a step's process gets: a clean environment, no new privileges, its own session and directory, an
unprivileged user when the engine is root, and a bubblewrap sandbox when the playbook asks for one."""
from __future__ import annotations

import logging
import os
import pwd
import shutil

import pytest

from events.commands import StartRun
from services.executor.processes import DEFAULT_STEP_USER, ProcessRules
from tests.helpers import playbook_yaml, running_engine, wait_for_end

pytestmark = pytest.mark.integration

USED = "used-Secret-0451"
OTHER = "other-Secret-9932"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="only an engine running as root switches users; "
                                                        "this test process is not root")


async def outputs_of(engine, steps: list[dict], **top) -> dict:
    reply = await engine.send(StartRun(playbook=playbook_yaml(steps, **top)))
    assert reply.accepted, reply
    events = await wait_for_end(engine, reply.run_id)
    ended = [e for e in events if type(e).__name__ in ("StepSucceeded", "StepFailed")]
    assert [type(e).__name__ for e in ended] == ["StepSucceeded"], [getattr(e, "error", "") for e in ended]
    return ended[0].outputs


def shell(command: str, **args) -> dict:
    return {"id": "look", "action": "shell", "timeout_seconds": 10, "args": {"command": command, **args}}


async def test_a_step_sees_none_of_the_engines_environment(engine, monkeypatch) -> None:
    monkeypatch.setenv("PLAYBOOK_SECRET_USED", USED)
    monkeypatch.setenv("PLAYBOOK_SECRET_OTHER", OTHER)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "engine-only-credential")
    monkeypatch.setenv("ALLOWED_REGION", "eu-west-1")
    monkeypatch.setenv("PLAYBOOK_ENV_ALLOW", "ALLOWED_REGION")
    outputs = await outputs_of(engine, [shell("env", env={"DECLARED": "yes", "REGION": "${env.ALLOWED_REGION}",
                                                          "TOKEN": "${secret:used}"})])
    seen = dict(line.split("=", 1) for line in outputs["stdout"].splitlines())
    own = {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "PWD", "SHLVL", "_", "OLDPWD"}
    attempt = {"PLAYBOOK_RUN_ID", "PLAYBOOK_STEP_ID", "PLAYBOOK_ATTEMPT", "PLAYBOOK_IDEMPOTENCY_KEY",
               "PLAYBOOK_STEP_OWNER"}
    assert set(seen) - own - attempt == {"DECLARED", "REGION", "TOKEN"}
    assert (seen["DECLARED"], seen["REGION"], seen["TOKEN"]) == ("yes", "eu-west-1", "***")
    assert seen["PLAYBOOK_IDEMPOTENCY_KEY"] == f"{seen['PLAYBOOK_RUN_ID']}/look/1" and seen["PLAYBOOK_ATTEMPT"] == "1"
    assert not set(seen) & (set(os.environ) - own)          # not one of the engine's variables
    assert OTHER not in outputs["stdout"] and "engine-only-credential" not in outputs["stdout"]
    assert seen["HOME"] != os.environ.get("HOME") and seen["HOME"].startswith("/")


async def test_a_step_cannot_gain_privileges_and_leads_its_own_session(engine) -> None:
    outputs = await outputs_of(engine, [shell("grep NoNewPrivs /proc/self/status; cut -d' ' -f6 /proc/$$/stat; "
                                              "echo $$")])
    no_new_privs, session, pid = outputs["stdout"].splitlines()
    assert no_new_privs.split() == ["NoNewPrivs:", "1"]
    assert session == pid


@AS_ROOT
async def test_a_root_engine_runs_steps_as_the_unprivileged_user(settings, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("PLAYBOOK_STEP_USER")                # the engine's default
    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text("db: not-for-steps-0001\n")
    secrets_file.chmod(0o600)
    nobody = pwd.getpwnam(DEFAULT_STEP_USER)
    async with running_engine(settings) as engine:
        outputs = await outputs_of(engine, [shell(
            f"id -u; id -g; echo $HOME; pwd; touch $HOME/mine && rm $HOME/mine && echo writable; "
            f"cat {secrets_file} 2>&1 || echo unreadable")])
    uid, gid, home, cwd, writable, *refused = outputs["stdout"].splitlines()
    assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid)
    assert home == cwd and writable == "writable"
    assert refused[-1] == "unreadable" and "not-for-steps" not in outputs["stdout"]
    assert os.stat(home).st_mode & 0o777 == 0o700 and os.stat(home).st_uid == nobody.pw_uid


async def test_what_a_step_leaves_in_its_home_is_gone_before_the_next_starts(engine) -> None:
    steps = [shell('mkdir -p $HOME/.docker && echo "{auths: x}" > $HOME/.docker/config.json && echo $HOME'),
             {**shell("ls -A $HOME | wc -l; echo $HOME"), "id": "next"}]
    reply = await engine.send(StartRun(playbook=playbook_yaml(steps)))
    events = await wait_for_end(engine, reply.run_id)
    first, second = [e.outputs["stdout"] for e in events if type(e).__name__ == "StepSucceeded"]
    count, home = second.splitlines()
    assert count == "0" and home != first                    # a directory left with anything is never reused


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed here; "
                                                           "Debian: apt-get install bubblewrap")
async def test_a_playbook_can_ask_for_a_bubblewrap_sandbox(settings, tmp_path, monkeypatch) -> None:
    hidden = tmp_path / "secrets.yaml"
    hidden.write_text("db: not-for-steps-0002\n")
    monkeypatch.setenv("PLAYBOOK_SECRETS_FILE", str(hidden))
    async with running_engine(settings) as engine:
        outputs = await outputs_of(engine, [shell(
            f"ls /proc | grep -c '^[0-9]'; kill -0 {os.getpid()} 2>/dev/null && echo engine-visible; "
            f"cat {hidden} 2>/dev/null; touch /usr/bin/planted 2>/dev/null || echo read-only; "
            "touch $HOME/mine && echo home-writable; grep NoNewPrivs /proc/self/status")], sandbox="bubblewrap")
    processes, *rest = outputs["stdout"].splitlines()
    assert int(processes) < 10                               # its own process namespace: the machine's are unseen
    assert rest[:2] == ["read-only", "home-writable"] and rest[2].split() == ["NoNewPrivs:", "1"]
    assert "engine-visible" not in outputs["stdout"] and "not-for-steps" not in outputs["stdout"]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed here; "
                                                           "Debian: apt-get install bubblewrap")
async def test_a_sandboxed_step_may_write_in_the_directory_it_names(engine, tmp_path) -> None:
    workdir = tmp_path / "build"
    workdir.mkdir()
    outputs = await outputs_of(engine, [shell("pwd; echo built > artefact", cwd=str(workdir))], sandbox="bubblewrap")
    assert outputs["stdout"] == str(workdir) and (workdir / "artefact").read_text() == "built\n"


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed here; "
                                                           "Debian: apt-get install bubblewrap")
async def test_a_directory_a_sandboxed_step_names_does_not_show_what_the_sandbox_hides(settings, tmp_path,
                                                                                       monkeypatch) -> None:
    """`cwd:` is bound writable into the sandbox; naming the folder that holds the secrets file (or
    $PLAYBOOK_HOME) bound it over the hiding, and the step read the file and could rewrite it."""
    hidden = tmp_path / "secrets.yaml"
    hidden.write_text("db: not-for-steps-0003\n")
    monkeypatch.setenv("PLAYBOOK_SECRETS_FILE", str(hidden))
    async with running_engine(settings) as engine:
        outputs = await outputs_of(engine, [shell(
            "cat secrets.yaml 2>/dev/null; echo planted > secrets.yaml 2>/dev/null; echo looked",
            cwd=str(tmp_path))], sandbox="bubblewrap")
    assert outputs["stdout"] == "looked" and hidden.read_text() == "db: not-for-steps-0003\n"


async def test_the_executor_says_at_start_whom_its_steps_run_as_and_whether_sandboxed(settings, caplog) -> None:
    caplog.set_level(logging.INFO, logger="services.executor.service")
    async with running_engine(settings):
        pass
    level, expected = ProcessRules.from_environ().isolation()
    said = [r for r in caplog.records if r.name == "services.executor.service" and "steps run as" in r.getMessage()]
    assert [(r.levelno, r.getMessage().partition(": ")[2]) for r in said] == [(level, expected)]


async def test_the_executor_warns_at_start_of_a_secrets_file_other_users_may_read(settings, caplog, tmp_path,
                                                                                  monkeypatch) -> None:
    """Credentials files open to others are refused; the secrets file, as sensitive, was read without a word
    (a user's `printf ... > secrets.yaml` is 0644, in a home Debian makes 0755)."""
    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text("db: for-the-engine-0004\n")
    secrets_file.chmod(0o644)
    monkeypatch.setenv("PLAYBOOK_SECRETS_FILE", str(secrets_file))
    caplog.set_level(logging.INFO, logger="services.executor.service")
    async with running_engine(settings):
        pass
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "secrets file" in r.getMessage()]
    assert len(said) == 1 and f"{secrets_file} may be read by other users (mode 0644)" in said[0]
