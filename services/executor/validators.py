"""Pre-step validators: checks that must hold before a step's action may touch anything."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from events.playbook import (CommandSucceeds, DiskSpace, FileExists, HttpStatus, MemoryUsage, PortOpen,
                             Validator)
from services.errors import PlaybookError, UnresolvedReference
from services.executor.actions import run_action
from services.executor.scope import redacted
from services.playbook.interpolate import Context, resolve, resolve_shell

log = logging.getLogger(__name__)

GB = 10**9
MEMINFO = Path("/proc/meminfo")


async def run_validators(validators: list[Validator], ctx: Context) -> str | None:
    """The first failing validator as one sentence, or None if all pass; bad references raise."""
    for number, validator in enumerate(validators, 1):
        name = type(validator).__struct_config__.tag
        check = _resolved(validator, ctx, f"validator {number} ({name})")
        try:
            problem = await _CHECKS[type(check)](check)
        except OSError as err:
            problem = f"{err.strerror or err}: {err.filename}" if err.filename else (err.strerror or str(err))
        except Exception as err:  # noqa: BLE001 - a bug here must fail the step, not the executor's message loop
            log.error("validator %s failed unexpectedly\n%s", name, redacted(traceback.format_exc()))
            problem = f"failed unexpectedly: {type(err).__name__}: {err}"
        if problem:
            return f"validator {number} ({name}): {problem}" + (f" — {check.message}" if check.message else "")
    return None


def _resolved(validator: Validator, ctx: Context, label: str) -> Validator:
    """The validator with its references resolved; shell commands get quoted values, like shell steps."""
    raw = msgspec.to_builtins(validator)
    command = raw.pop("command", None)
    try:
        raw = resolve(raw, ctx)
        if command is not None:
            raw["command"] = resolve_shell(command, ctx)
        return msgspec.convert(raw, type(validator))
    except UnresolvedReference as err:
        raise UnresolvedReference(f"{label}: {err}") from None
    except msgspec.ValidationError as err:  # a whole-value reference brought a value of another type
        raise PlaybookError(f"{label}: after interpolation, {err}") from None


async def _http_status(check: HttpStatus) -> str | None:
    expected = [check.expected_status] if isinstance(check.expected_status, int) else check.expected_status
    result = await run_action("http_request", {
        "url": check.url, "method": check.method, "headers": check.headers, "expect_status": expected,
        "max_body_bytes": 0,
    }, timeout=check.timeout_seconds)
    return None if result.ok else result.error


async def _port_open(check: PortOpen) -> str | None:
    where = f"{check.host}:{check.port}"
    if not 0 < check.port < 65536:
        return f"port {check.port} is not between 1 and 65535"
    try:
        async with asyncio.timeout(check.timeout_seconds):
            _, writer = await asyncio.open_connection(check.host, check.port)
    except TimeoutError:
        return f"nothing answered on {where} within {check.timeout_seconds:g}s"
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno and err.errno > 0 else err.strerror or str(err)
        return f"cannot connect to {where}: {reason}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def _file_exists(check: FileExists) -> str | None:
    try:
        mode = (await asyncio.to_thread(os.stat, check.path)).st_mode
    except FileNotFoundError:
        return f"{check.path} does not exist"
    if check.kind == "file" and not stat.S_ISREG(mode):
        return f"{check.path} is not a regular file"
    if check.kind == "directory" and not stat.S_ISDIR(mode):
        return f"{check.path} is not a directory"
    return None


async def _disk_space(check: DiskSpace) -> str | None:
    if check.min_free_gb is None and check.min_free_percent is None:
        return "give 'min_free_gb' or 'min_free_percent' (or both)"
    fs = await asyncio.to_thread(os.statvfs, check.path)
    free_gb = fs.f_bavail * fs.f_frsize / GB
    free_percent = 100 * fs.f_bavail / fs.f_blocks if fs.f_blocks else 0.0
    if check.min_free_gb is not None and free_gb < check.min_free_gb:
        return f"only {free_gb:.1f} GB free on {check.path}, need {check.min_free_gb:g} GB"
    if check.min_free_percent is not None and free_percent < check.min_free_percent:
        return f"only {free_percent:.1f}% free on {check.path}, need {check.min_free_percent:g}%"
    return None


async def _memory_usage(check: MemoryUsage) -> str | None:
    kib = _meminfo(MEMINFO.read_text())  # noqa: ASYNC240 - procfs is served from kernel memory: never blocks
    if "MemTotal" not in kib or "MemAvailable" not in kib:
        return f"{MEMINFO} has no MemTotal and MemAvailable (Linux 3.14 or later is needed)"
    used = 100 * (1 - kib["MemAvailable"] / kib["MemTotal"])
    if used > check.max_used_percent:
        return f"{used:.1f}% of memory is in use, limit {check.max_used_percent:g}%"
    return None


def _meminfo(text: str) -> dict[str, int]:
    """`MemAvailable:  123 kB` lines as {name: kibibytes}."""
    lines = (line.partition(":") for line in text.splitlines())
    return {name: int(rest.split()[0]) for name, _, rest in lines if rest.strip()}


async def _command_succeeds(check: CommandSucceeds) -> str | None:
    if (check.command is None) == (check.argv is None):
        return "give exactly one of 'command' and 'argv'"
    program: dict[str, Any] = {"command": check.command} if check.command is not None else {"argv": check.argv}
    result = await run_action("shell", {**program, "ok_returncodes": [check.expected_returncode]},
                              timeout=check.timeout_seconds)
    if result.ok:
        return None
    if result.category != "timeout" and "returncode" in result.outputs:   # it exited, with another code
        return f"{result.error} (expected exit code {check.expected_returncode})"
    return result.error


_CHECKS: dict[type[Any], Callable[[Any], Awaitable[str | None]]] = {
    HttpStatus: _http_status,
    PortOpen: _port_open,
    FileExists: _file_exists,
    DiskSpace: _disk_space,
    MemoryUsage: _memory_usage,
    CommandSucceeds: _command_succeeds,
}
