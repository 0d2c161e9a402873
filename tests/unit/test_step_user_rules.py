"""Whom steps run as, decided from PLAYBOOK_STEP_USER and the engine's own user, and said at start.

CI runs as root; most users run the engine as themselves. An ordinary engine cannot switch users, and an
explicit PLAYBOOK_STEP_USER naming someone else was silently ignored: its steps ran as the engine's user."""
from __future__ import annotations

import logging
import pwd

import pytest

from services.executor.processes import ProcessRules, StepProcessError

NOBODY = pwd.getpwnam("nobody")


def test_an_ordinary_engine_asked_to_run_steps_as_someone_else_refuses_to_start() -> None:
    with pytest.raises(StepProcessError, match="runs as nobody, not root, and cannot switch users"):
        ProcessRules.from_environ({"PLAYBOOK_STEP_USER": "root"}, euid=NOBODY.pw_uid)


def test_an_ordinary_engine_runs_steps_as_itself_unset_or_named() -> None:
    for environ in ({}, {"PLAYBOOK_STEP_USER": "nobody"}, {"PLAYBOOK_STEP_USER": str(NOBODY.pw_uid)}):
        assert ProcessRules.from_environ(environ, euid=NOBODY.pw_uid).user is None


def test_a_root_engine_still_runs_steps_as_nobody_by_default_and_as_root_on_purpose() -> None:
    rules = ProcessRules.from_environ({}, euid=0)
    assert rules.user is not None and rules.user.uid == NOBODY.pw_uid
    assert ProcessRules.from_environ({"PLAYBOOK_STEP_USER": "root"}, euid=0).user is None


def test_the_engine_warns_when_its_steps_share_its_own_ordinary_user_unsandboxed() -> None:
    level, said = ProcessRules.from_environ({}, euid=NOBODY.pw_uid).isolation()
    assert level == logging.WARNING
    assert "steps run as nobody, the engine's own user (not root: it cannot switch)" in said
    assert "credentials" in said and "PLAYBOOK_STEP_SANDBOX=bubblewrap" in said
    level, said = ProcessRules.from_environ({}, euid=0).isolation()
    assert level == logging.INFO and said.startswith(f"steps run as nobody (uid {NOBODY.pw_uid}), unsandboxed")
