"""shell: real subprocesses, as the executor runs them."""
import asyncio
import os
import signal
from pathlib import Path

import pytest

from services.executor.actions import ActionResult, run_action


async def shell(timeout: float | None = None, **args) -> ActionResult:
    return await asyncio.wait_for(run_action("shell", args, timeout=timeout), 30)


async def read_pids(fifo: Path) -> list[int]:
    """The pids a command writes into `fifo` (opened before the command starts, so writing never blocks)."""
    loop = asyncio.get_running_loop()
    written: asyncio.Future[None] = loop.create_future()
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    loop.add_reader(fd, lambda: written.done() or written.set_result(None))
    try:
        await asyncio.wait_for(written, 10)
        return [int(pid) for pid in os.read(fd, 100).split()]
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def exited(pid: int) -> bool:
    """Whether the process has exited. A zombie counts: this container's init never reaps orphans."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: gone.done() or gone.set_result(None))
    try:
        await asyncio.wait_for(gone, 2)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pids"
    os.mkfifo(path)
    return path


async def test_a_command_reports_its_output_without_the_trailing_newline():
    result = await shell(command="echo hello; echo warning >&2")
    assert result == ActionResult(ok=True, outputs={"returncode": 0, "stdout": "hello", "stderr": "warning"})


async def test_only_one_trailing_newline_is_stripped():
    result = await shell(command="printf 'a\\n\\n'")
    assert result.outputs["stdout"] == "a\n"


async def test_a_non_zero_exit_fails_with_the_last_line_of_stderr():
    result = await shell(command="echo step 1 >&2; echo disk full >&2; exit 3")
    assert not result.ok
    assert result.error == "command exited with code 3: disk full"
    assert result.category == "unknown"
    assert result.outputs["returncode"] == 3


async def test_ok_returncodes_decide_what_succeeds():
    assert (await shell(command="exit 3", ok_returncodes=[0, 3])).ok
    assert not (await shell(command="true", ok_returncodes=[1])).ok


async def test_a_command_not_found_is_a_configuration_failure():
    result = await shell(command="no-such-command-anywhere")
    assert result.outputs["returncode"] == 127
    assert result.category == "configuration"
    assert result.error.startswith("command exited with code 127 (not found): ")


async def test_a_program_not_found_in_argv_mode_is_a_configuration_failure():
    result = await shell(argv=["no-such-program-anywhere"])
    assert result.category == "configuration"
    assert "no-such-program-anywhere" in result.error


async def test_a_process_killed_by_sigkill_is_a_resource_failure():
    result = await shell(command="kill -KILL $$")
    assert result.outputs["returncode"] == -signal.SIGKILL
    assert result.category == "resource"


async def test_a_process_killed_by_another_signal_is_unknown():
    result = await shell(command="kill -TERM $$")
    assert result.error == "command was killed by SIGTERM"
    assert result.category == "unknown"


async def test_argv_passes_each_item_as_one_literal_argument():
    result = await shell(argv=["printf", "%s", "; rm -rf / #"])
    assert result.outputs["stdout"] == "; rm -rf / #"


async def test_env_is_added_to_the_environment_and_cwd_is_used(tmp_path):
    result = await shell(command='echo "$GREETING $PORT"; pwd', env={"GREETING": "hi", "PORT": 8080},
                         cwd=str(tmp_path))
    assert result.outputs["stdout"] == f"hi 8080\n{tmp_path}"


async def test_a_missing_cwd_is_a_configuration_failure(tmp_path):
    result = await shell(command="true", cwd=str(tmp_path / "missing"))
    assert result.category == "configuration"
    assert "missing" in result.error


async def test_stdin_is_written_to_the_command():
    result = await shell(argv=["tr", "a-z", "A-Z"], stdin="shout\n")
    assert result.outputs["stdout"] == "SHOUT"


async def test_output_beyond_the_limit_is_cut_with_a_marker():
    result = await shell(command="printf '0123456789'; printf 'abcdef' >&2", max_output_bytes=4)
    assert result.outputs["stdout"] == "0123\n[... truncated 6 bytes]"
    assert result.outputs["stderr"] == "abcd\n[... truncated 2 bytes]"


async def test_big_output_on_both_streams_does_not_deadlock():
    result = await shell(command="head -c 5000000 /dev/zero; head -c 5000000 /dev/zero >&2")
    assert result.ok
    assert result.outputs["stdout"].endswith(f"\n[... truncated {5_000_000 - 65536} bytes]")
    assert result.outputs["stderr"].endswith(f"\n[... truncated {5_000_000 - 65536} bytes]")


async def test_big_output_is_kept_whole_when_the_limit_allows():
    result = await shell(command="head -c 5000000 /dev/zero | tr '\\0' x", max_output_bytes=5_000_000)
    assert len(result.outputs["stdout"]) == 5_000_000


async def test_invalid_utf8_is_replaced_not_fatal():
    result = await shell(command="printf 'caf\\351'")
    assert result.outputs["stdout"] == "caf\ufffd"


async def test_a_timeout_kills_the_process_group_including_grandchildren(fifo):
    task = asyncio.create_task(run_action(
        "shell", {"command": f"sh -c 'sleep 60 & echo $$ $! > {fifo}; wait'; sleep 60"}, timeout=1))
    pids = await read_pids(fifo)
    result = await asyncio.wait_for(task, 10)
    assert (result.ok, result.error, result.category) == (False, "timed out after 1s", "timeout")
    assert [await exited(pid) for pid in pids] == [True, True]


async def test_a_timed_out_command_keeps_what_it_printed_until_then(fifo):
    """The failure is where an operator looks for why: it kept nothing, so what a hung command said was only in
    the live logs (a week), not in its event (for good)."""
    task = asyncio.create_task(run_action(
        "shell", {"command": f"echo connecting to db; echo 'waiting for lock' >&2; echo $$ > {fifo}; sleep 60"},
        timeout=1))
    await read_pids(fifo)
    result = await asyncio.wait_for(task, 10)
    assert (result.ok, result.error, result.category) == (False, "timed out after 1s", "timeout")
    assert (result.outputs["stdout"], result.outputs["stderr"]) == ("connecting to db", "waiting for lock")
    assert result.outputs["returncode"] == -signal.SIGTERM


async def test_cancelling_stops_the_command_and_its_children_quickly(fifo):
    task = asyncio.create_task(run_action(
        "shell", {"command": f"sh -c 'sleep 60 & echo $$ $! > {fifo}; wait'; sleep 60"}))
    pids = await read_pids(fifo)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert [await exited(pid) for pid in pids] == [True, True]


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace(fifo):
    task = asyncio.create_task(run_action(
        "shell", {"command": f"trap '' TERM; sleep 60 & echo $! > {fifo}; wait"}, timeout=30))
    [child] = await read_pids(fifo)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert await exited(child)


@pytest.mark.parametrize("args, problem", [
    ({"command": ""}, "'command' must not be empty"),
    ({"argv": []}, "'argv' must not be empty"),
    ({"argv": "ls -l"}, "'argv' must be a list, got str"),
    ({"command": "true", "max_output_bytes": -1}, "'max_output_bytes' must be an integer >= 0, got -1"),
    ({"command": "true", "env": {"A": ["x"]}}, "'env' values must be strings or numbers, got list"),
    ({"command": "true", "ok_returncodes": ["0"]}, "'ok_returncodes' must be a list of integers"),
])
async def test_bad_values_are_configuration_failures_naming_the_arg(args, problem):
    assert await shell(**args) == ActionResult(ok=False, error=f"shell: {problem}", category="configuration")


async def test_a_steps_background_processes_end_with_it():
    # One keeps the step's output open, one let go of it: neither outlives the command, and the step
    # ends when the command does, not when its background jobs would have (nor at its timeout).
    result = await shell(command="sleep 300 & echo $!; nohup sleep 300 >/dev/null 2>&1 & echo $!", timeout=60)
    assert result.ok, result
    for pid in map(int, result.outputs["stdout"].split()):
        assert await exited(pid)


async def test_a_background_process_deaf_to_sigterm_is_killed_all_the_same():
    result = await shell(command="(trap '' TERM; sleep 300) >/dev/null 2>&1 & echo $!", timeout=60)
    assert result.ok
    assert await exited(int(result.outputs["stdout"]))


async def test_a_step_process_knows_its_engine_process_and_nothing_of_an_attempt_outside_one():
    result = await shell(command="env")
    seen = dict(line.split("=", 1) for line in result.outputs["stdout"].splitlines())
    assert seen["PLAYBOOK_STEP_OWNER"].split("/")[2] == str(os.getpid())
    assert "PLAYBOOK_IDEMPOTENCY_KEY" not in seen
