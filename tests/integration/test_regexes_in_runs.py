"""Authors' regular expressions over long step output, through the services: under Python's `re`, `.*.*x`
over 4 KB of output held the run service (and every service of its process) for a minute; on RE2 the run
simply goes on. A pattern RE2 cannot run that only `${...}` brings fails its step, saying why."""
from __future__ import annotations

import pytest

from events.commands import StartRun
from events.run import RunCompleted, RunFailed, StepFailed, StepNotRetried, StepRemediated, StepSkipped, StepSucceeded
from tests.helpers import playbook_yaml, wait_for_end

pytestmark = pytest.mark.integration

LOUD = {"command": "head -c 600000 /dev/zero | tr '\\0' a", "max_output_bytes": 1_000_000}


async def test_when_matches_over_long_output_decides_and_the_run_completes(engine) -> None:
    text = playbook_yaml([
        {"id": "loud", "action": "shell", "args": LOUD, "timeout_seconds": 20},
        {"id": "never", "action": "noop", "depends_on": ["loud"],
         "when": {"type": "matches", "left": "${steps.loud.stdout}", "right": ".*.*x"}},
        {"id": "always", "action": "noop", "depends_on": ["loud"],
         "when": {"type": "matches", "left": "${steps.loud.stdout}", "right": "(?i)(.*)*A"}},
        {"id": "checked", "action": "shell", "args": LOUD, "timeout_seconds": 20,
         "validations": [{"type": "matches", "left": "${stdout}", "right": "^(a+)+$"}]},
    ])
    reply = await engine.send(StartRun(playbook=text))
    assert reply.accepted, reply.error
    events = await wait_for_end(engine, reply.run_id, timeout=60)
    assert isinstance(events[-1], RunCompleted), events[-1]
    assert [e.step_id for e in events if isinstance(e, StepSkipped)] == ["never"]
    assert {e.step_id for e in events if isinstance(e, StepSucceeded)} == {"loud", "always", "checked"}


async def test_an_error_handler_pattern_finds_its_words_after_long_output(engine) -> None:
    text = playbook_yaml(
        [{"id": "deploy", "action": "shell", "timeout_seconds": 20,
          "args": {**LOUD, "command": LOUD["command"] + "; echo; echo 'Deploy Lock Held' >&2; exit 1"}}],
        error_handlers=[{"pattern": "(.*)*qz", "then": "fail", "run": {"action": "noop"}},
                        {"pattern": ".*.*deploy lock held", "then": "fail", "run": {"action": "noop"}}])
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id, timeout=60)
    assert isinstance(events[-1], RunFailed)
    [remediated] = [e for e in events if isinstance(e, StepRemediated)]
    [verdict] = [e for e in events if isinstance(e, StepNotRetried)]
    assert remediated.step_id == "deploy" and "error handler 2" in verdict.reason, verdict


async def test_a_pattern_from_a_variable_that_re2_cannot_run_fails_the_step_saying_why(engine) -> None:
    text = playbook_yaml(
        [{"id": "gate", "action": "noop", "when": {"type": "matches", "left": "deploy started",
                                                   "right": "${pattern}"}}],
        variables={"pattern": "deploy(?! done)"})
    reply = await engine.send(StartRun(playbook=text))
    assert reply.accepted, reply.error
    events = await wait_for_end(engine, reply.run_id)
    assert isinstance(events[-1], RunFailed)
    [failed] = [e for e in events if isinstance(e, StepFailed)]
    assert failed.category == "configuration" and failed.error.startswith("cannot evaluate `when`")
    assert "no lookahead or lookbehind" in failed.error, failed.error
