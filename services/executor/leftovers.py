"""Leftovers: step processes whose engine process died, found on this machine and killed.

Every step process carries, in its environment, the identity of the engine process that
started it (boot, PID namespace, pid and that pid's start time, so a reused pid is not
mistaken for it) and its attempt's key. An executor starting, or taking over an attempt
whose holder ran on this machine, kills such processes and their groups: the guardian
normally has, but it may have been killed too. A process that cleared its environment and
left its session is out of reach; docs/execution.md says so.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

OWNER_VARIABLE = "PLAYBOOK_STEP_OWNER"     # the engine process that started the step process
ATTEMPT_VARIABLE = "PLAYBOOK_IDEMPOTENCY_KEY"
PROC = Path("/proc")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Instance:
    """One engine process, told apart from any other that ever ran: a pid is unique only with its start time,
    within one boot and one PID namespace."""

    host: str
    boot_id: str
    pidns: str
    pid: int
    started: int          # clock ticks after boot (/proc/<pid>/stat, field 22)

    @property
    def marker(self) -> str:
        return f"{self.boot_id}/{self.pidns}/{self.pid}/{self.started}"

    def same_machine(self, boot_id: str, pidns: str) -> bool:
        return (boot_id, pidns) == (self.boot_id, self.pidns) and bool(boot_id)


def this_process() -> Instance:
    pid = os.getpid()
    return Instance(socket.gethostname(), _read(PROC / "sys/kernel/random/boot_id").strip(), _pidns(), pid,
                    _started(pid) or 0)


def alive(pid: int, started: int) -> bool:
    """Whether that very process still runs (not another that got its pid)."""
    return _started(pid) == started


def sweep(me: Instance, attempt: str | None = None) -> list[int]:
    """Kill step processes of engine processes on this machine that are gone (or, given `attempt`, that
    attempt's, whoever started them); returns the pids killed."""
    killed = []
    for pid, owner, key in step_processes():
        boot_id, pidns, owner_pid, owner_started = owner
        if not me.same_machine(boot_id, pidns):
            continue
        if (key == attempt) if attempt is not None else not alive(owner_pid, owner_started):
            if _kill(pid):
                killed.append(pid)
    if killed:
        log.warning("killed %d leftover step processes of engine processes gone: %s", len(killed), killed)
    return killed


def step_processes() -> Iterator[tuple[int, tuple[str, str, int, int], str | None]]:
    """(pid, its owner's (boot, pidns, pid, start), its attempt key) of every process a step started."""
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        found = dict(item.decode(errors="replace").split("=", 1) for item in environ
                     if item.startswith((OWNER_VARIABLE.encode() + b"=", ATTEMPT_VARIABLE.encode() + b"=")))
        owner = found.get(OWNER_VARIABLE, "").split("/")
        if len(owner) == 4 and owner[2].isdigit() and owner[3].isdigit():
            yield int(entry.name), (owner[0], owner[1], int(owner[2]), int(owner[3])), found.get(ATTEMPT_VARIABLE)


def _kill(pid: int) -> bool:
    """SIGKILL the process and its group, sure through a pidfd that it is the process we looked at."""
    started = _started(pid)
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if started is None or _started(pid) != started:
            return False     # gone, or the pid was reused between our look and the pidfd
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    finally:
        os.close(fd)


def _started(pid: int) -> int | None:
    try:
        stat = _read(PROC / str(pid) / "stat")
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])   # field 22; the name before ")" may hold spaces


def _pidns() -> str:
    try:
        return os.readlink(PROC / "self/ns/pid")
    except OSError:
        return ""


def _read(path: Path) -> str:
    return path.read_text()
