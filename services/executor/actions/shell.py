"""shell: run a command in its own process group, keep the head of its output; the group ends with the command.

When the command exits, whatever it left running in its group (`sleep 100 &`, a daemon that
kept the group) is stopped too: a step's processes do not outlive the step. On a timeout or a
cancel the whole group is stopped. SIGTERM first, SIGKILL after GRACE_SECONDS.

The process starts under the engine's rules for step processes (`processes`): a clean
environment, no new privileges, a private directory, an unprivileged user when the engine
is root. A cut output never ends inside a secret the attempt holds.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
from typing import Any

from events.run import ErrorCategory
from services.executor.processes import step_process
from services.executor.scope import current_attempt, current_processes, current_scope
from services.playbook.actions import ACTION_SPECS, MAX_OUTPUT_BYTES
from services.secrets import Redactor

from .base import (
    Action, ActionResult, arg, cut_before_secret, cut_off_outputs, live_output, text_list, text_map,
)

GRACE_SECONDS = 0.5  # between SIGTERM and SIGKILL when stopping a command
_ERROR_LINE_CHARS = 200


class _Capture(asyncio.SubprocessProtocol):
    """Keeps at most `limit` bytes of stdout and stderr as they arrive, so big output never piles up."""

    def __init__(self, limit: int, finished: asyncio.Future[None], exited: asyncio.Future[None]) -> None:
        self.limit = limit
        self.finished, self.exited = finished, exited
        self.kept = {1: bytearray(), 2: bytearray()}
        self.dropped = {1: 0, 2: 0}
        self.live = live_output.get()
        scope = current_scope()
        self.redactor = scope.secrets.redactor if scope else None

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self.live is not None:
            self.live(fd, data)
        kept = self.kept[fd]
        room = self.limit - len(kept)
        if room >= len(data):
            kept += data
        else:
            kept += data[:room]
            self.dropped[fd] += len(data) - room

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        # Called once the process has exited and every pipe is closed.
        if not self.finished.done():
            self.finished.set_result(None)

    def text(self, fd: int) -> str:
        text = self.kept[fd].decode(errors="replace")
        if self.dropped[fd]:
            kept = cut_before_secret(text, self.redactor)
            dropped = self.dropped[fd] + len(text[len(kept):].encode())
            return f"{kept}\n[... truncated {dropped} bytes]"
        return text.removesuffix("\n")


async def run_shell(args: dict[str, Any]) -> ActionResult:
    """Run the command to its end; if we are cancelled, stop its whole process group first."""
    program = _program(args)
    stdin = arg(args, "stdin")
    env = text_map(args, "env")
    limit = arg(args, "max_output_bytes", MAX_OUTPUT_BYTES)
    ok_returncodes = _ok_returncodes(args)
    cwd = arg(args, "cwd")
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    exited: asyncio.Future[None] = loop.create_future()
    with step_process(current_processes(), program, env, cwd, current_attempt()) as launch:
        if problem := _missing_program(program[0], launch.env["PATH"], cwd):
            return ActionResult(ok=False, error=f"could not start command: {problem}", category="configuration")
        starting = asyncio.ensure_future(launch.start(lambda: _Capture(limit, finished, exited),
                                                      stdin=stdin is not None))
        try:
            transport, capture = await asyncio.shield(starting)
        except (OSError, ValueError) as err:  # not executable, no such cwd, a NUL in an arg
            reason = f"{err.strerror}: {err.filename!r}" if isinstance(err, OSError) else str(err)
            return ActionResult(ok=False, error=f"could not start command: {reason}", category="configuration")
        except asyncio.CancelledError:
            await _stop_starting(starting, finished)
            raise
        with launch.held(transport.get_pid()):
            try:
                if stdin is not None:
                    pipe = transport.get_pipe_transport(0)
                    pipe.write(stdin.encode())
                    pipe.write_eof()
                await asyncio.shield(exited)
                await asyncio.shield(_end_group(transport, finished))
            except BaseException:
                await _stop(transport, finished)
                if (cut_off := cut_off_outputs.get()) is not None:   # a timeout: its failure keeps what was printed
                    cut_off.update(_outputs(transport.get_returncode(), capture))
                raise
            finally:
                transport.close()
    return _result(transport.get_returncode(), capture, ok_returncodes)


def _missing_program(program: str, path: str, cwd: str | None) -> str | None:
    """Said before starting, since behind the wrappers a missing program would only be exit code 127."""
    if "/" in program:
        found = os.path.join(cwd, program) if cwd and not os.path.isabs(program) else program
        return None if os.path.exists(found) else f"No such file or directory: {program!r}"
    return None if shutil.which(program, path=path) else f"No such file or directory: {program!r} (PATH={path})"


async def _end_group(transport: asyncio.SubprocessTransport, finished: asyncio.Future[None]) -> None:
    """The command exited: what it left running in its group goes too, and we stop reading once the pipes
    close (or a grace after, should a process that left the group still hold them)."""
    group = transport.get_pid()   # start_new_session: the group id is the leader's pid
    if _group_alive(group):
        _signal_group(group, signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + GRACE_SECONDS
        while _group_alive(group) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 - no
            await asyncio.sleep(0.01)                                                # event says a group emptied
        _signal_group(group, signal.SIGKILL)
    await asyncio.wait((finished,), timeout=GRACE_SECONDS)
    transport.close()
    await finished


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _stop(transport: asyncio.SubprocessTransport, finished: asyncio.Future[None]) -> None:
    """SIGTERM the process group, SIGKILL what is left after the grace, then reap the leader."""
    group = transport.get_pid()  # start_new_session: the group id is the leader's pid
    try:
        _signal_group(group, signal.SIGTERM)
        await asyncio.wait((finished,), timeout=GRACE_SECONDS)
    finally:
        _signal_group(group, signal.SIGKILL)
        transport.close()
    await finished


async def _stop_starting(starting: asyncio.Future, finished: asyncio.Future[None]) -> None:
    """Let the start complete, then stop the group.

    asyncio's own clean-up for a start cancelled midway kills only the leader, then waits
    for every pipe to close, which the leader's children can hold open for ever.
    """
    await asyncio.wait((starting,))
    if not starting.cancelled() and starting.exception() is None:
        transport, _ = starting.result()
        await _stop(transport, finished)


def _signal_group(group: int, signum: signal.Signals) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def _program(args: dict[str, Any]) -> list[str]:
    command = arg(args, "command")
    return ["/bin/sh", "-c", command] if command is not None else text_list(args, "argv") or []


def _ok_returncodes(args: dict[str, Any]) -> frozenset[int]:
    codes = arg(args, "ok_returncodes", [0])
    return frozenset([codes] if isinstance(codes, int) else codes)


def _outputs(returncode: int | None, capture: _Capture) -> dict[str, Any]:
    return {"returncode": returncode, "stdout": capture.text(1), "stderr": capture.text(2)}


def _result(returncode: int, capture: _Capture, ok_returncodes: frozenset[int]) -> ActionResult:
    outputs = _outputs(returncode, capture)
    if returncode in ok_returncodes:
        return ActionResult(ok=True, outputs=outputs)
    error, category = _failure(returncode)
    detail = _last_line(capture.kept[2], capture.redactor)
    return ActionResult(ok=False, outputs=outputs, error=f"{error}: {detail}" if detail else error,
                        category=category)


def _failure(returncode: int) -> tuple[str, ErrorCategory]:
    """What a return code most likely means, and its error category."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode == signal.SIGKILL:
            return "command was killed by SIGKILL (often: out of memory)", "resource"
        return f"command was killed by {name}", "unknown"
    if returncode == 128 + signal.SIGKILL:  # how a shell reports a child killed by SIGKILL
        return "command exited with code 137 (killed by SIGKILL, often: out of memory)", "resource"
    if returncode == 126:
        return "command exited with code 126 (not executable)", "configuration"
    if returncode == 127:
        return "command exited with code 127 (not found)", "configuration"
    return f"command exited with code {returncode}", "unknown"


def _last_line(stderr: bytes, redactor: Redactor | None) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    if not lines:
        return ""
    line = lines[-1].strip()
    return line if len(line) <= _ERROR_LINE_CHARS else cut_before_secret(line, redactor, _ERROR_LINE_CHARS) + "…"


SHELL = Action(run=run_shell, spec=ACTION_SPECS["shell"])
