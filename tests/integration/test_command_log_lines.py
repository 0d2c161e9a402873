"""The run service's line per command stays short: a resume that schedules a wide wave says how many, not each."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from events.commands import PauseRun, ResumeRun, StartRun
from events.run import RunPaused, StepStarted, StepSucceeded
from tests.helpers import noop, playbook_yaml, until_event, wait_for_end
from ui.cli.common import print_reply

pytestmark = pytest.mark.integration

WIDE = 300


async def test_a_resume_that_schedules_a_wide_wave_is_one_short_line(engine, tmp_path: Path, caplog,
                                                                     capsys) -> None:
    go = tmp_path / "go"
    first = {"id": "first", "action": "shell", "timeout_seconds": 30,
             "args": {"command": f"while [ ! -e {go} ]; do sleep 0.02; done"}}
    wave = [noop(f"p{n}", parallel_group="wide") for n in range(WIDE)]
    reply = await engine.send(StartRun(playbook=playbook_yaml([first, *wave])))
    await until_event(engine, reply.run_id, StepStarted)
    await engine.send(PauseRun(run_id=reply.run_id))
    await until_event(engine, reply.run_id, RunPaused)
    go.touch()                                           # the first step ends while the run is paused
    await until_event(engine, reply.run_id, StepSucceeded)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="services.run.service"):
        resumed = await engine.send(ResumeRun(run_id=reply.run_id))
    assert resumed.accepted and len(resumed.events) == WIDE + 1
    (line,) = [r.getMessage() for r in caplog.records if "ResumeRun" in r.getMessage()]
    assert line.endswith(f"RunResumed, StepScheduled x{WIDE}") and len(line) < 200, line[:300]
    print_reply(resumed, as_json=False)                  # what `playbook resume` prints
    assert capsys.readouterr().out == f"run {reply.run_id}: RunResumed, StepScheduled x{WIDE}\n"
    await wait_for_end(engine, reply.run_id, timeout=60)
