"""noop, wait, and what run_action promises for every action: arg problems and timeouts."""
import asyncio
import json

import pytest

from services.executor.actions import ACTIONS, ActionResult, run_action, validate_args
from services.playbook import validate_playbook
from services.playbook.actions import ACTION_SPECS


async def test_noop_returns_the_given_outputs():
    result = await run_action("noop", {"outputs": {"version": "1.2.3", "replicas": 3}})
    assert result == ActionResult(ok=True, outputs={"version": "1.2.3", "replicas": 3})


async def test_noop_echoes_its_message():
    result = await run_action("noop", {"message": "nothing to do"})
    assert result.outputs == {"message": "nothing to do"}


async def test_wait_reports_how_long_it_waited():
    result = await run_action("wait", {"seconds": 0.01})
    assert result == ActionResult(ok=True, outputs={"waited_seconds": 0.01})


@pytest.mark.parametrize("seconds", [-1, float("nan"), "soon", True])
async def test_a_bad_wait_is_a_configuration_failure_naming_the_arg(seconds):
    result = await run_action("wait", {"seconds": seconds})
    assert not result.ok and result.category == "configuration"
    assert result.error.startswith("wait: 'seconds' must be")


async def test_timeouts_are_measured():
    result = await asyncio.wait_for(run_action("wait", {"seconds": 60}, timeout=0.1), 10)
    assert result == ActionResult(ok=False, error="timed out after 0.1s", category="timeout")


async def test_a_cancelled_action_propagates_the_cancellation():
    task = asyncio.create_task(run_action("wait", {"seconds": 60}))
    await asyncio.sleep(0)  # let the task start waiting
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_an_unknown_action_fails_as_configuration():
    result = await run_action("shel", {"command": "true"})
    assert result == ActionResult(ok=False, category="configuration",
                                  error="unknown action 'shel' (did you mean 'shell'?)")


def test_validate_args_names_unknown_args_with_a_suggestion():
    assert validate_args("shell", {"comand": "ls"}) == [
        "shell: unknown arg 'comand' — did you mean 'command'?",
        "shell: 'command' or 'argv' is required",
    ]


def test_validate_args_names_missing_required_args():
    assert validate_args("wait", {}) == ["wait: 'seconds' is required"]
    assert validate_args("http_request", {"method": "GET"}) == ["http_request: 'url' is required"]


def test_validate_args_refuses_exclusive_args_together():
    assert validate_args("shell", {"command": "ls", "argv": ["ls"]}) == [
        "shell: 'command' and 'argv' exclude each other; give one"]
    assert validate_args("http_request", {"url": "http://x", "json": {}, "data": "x"}) == [
        "http_request: 'json' and 'data' exclude each other; give one"]


def test_validate_args_checks_the_resolved_values_even_those_that_look_like_references():
    """Args arrive resolved: a `${...}` left in them is text (validation let it pass, unknown until now)."""
    assert validate_args("wait", {"seconds": "${delay}"}) == ["wait: 'seconds' must be a number of seconds, got str"]


def test_validate_args_refuses_args_that_are_not_a_mapping():
    assert validate_args("noop", ["outputs"]) == ["noop: args must be a mapping, got list"]


def test_every_action_describes_its_args():
    for name, action in ACTIONS.items():
        assert action.spec is ACTION_SPECS[name]
        assert action.spec.args, name
        assert all(arg.meaning for arg in action.spec.args.values()), name


@pytest.mark.parametrize(("action", "args"), [
    ("wait", {"seconds": -5}), ("wait", {}), ("http_request", {}), ("shell", {}),
    ("shell", {"command": "true", "bogus": 1}), ("noop", {"zzz": 1}),
])
async def test_the_run_refuses_an_arg_in_the_words_validation_said_before(action, args):
    """One definition of the args: what validation reports (PB107) is what the step would fail on."""
    step = {"id": "a", "name": "A", "action": action, "args": args, "timeout_seconds": 5}
    said = {d.message for d in validate_playbook(json.dumps({"name": "x", "steps": [step]})) if d.code == "PB107"}
    result = await run_action(action, args)
    assert (result.ok, result.category) == (False, "configuration")
    assert set(result.error.split("; ")) == said != set()


@pytest.mark.parametrize(("action", "args"), [
    ("noop", {"outputs": {"x": 1}, "message": "hi"}), ("wait", {"seconds": 0}), ("shell", {"command": "echo hi"}),
    ("shell", {"command": "exit 3"}),
])
async def test_what_an_action_returns_is_what_validation_lets_a_playbook_read(action, args):
    """`${steps.<id>.<output>}` of another name is refused before the run (PB213): the two must agree."""
    from services.playbook.step_outputs import returned
    result = await asyncio.wait_for(run_action(action, args, timeout=10), 30)
    assert set(result.outputs) <= returned(action, args) != set()
