"""Leftovers: step processes whose engine process died, found on this machine and killed.

Every step process carries, in its environment, the identity of the engine process that
started it (boot, PID namespace, pid and that pid's start time, so a reused pid is not
mistaken for it) and its attempt's key. An executor starting, or taking over an attempt
whose holder ran on this machine, kills such processes and their groups: the guardian
normally has, but it may have been killed too. A process that cleared its environment and
left its session is out of reach; docs/execution.md says so.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from services.executor.guardian import PROC, kill_process, marked_processes, started_at

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

    @classmethod
    def parse(cls, marker: str) -> tuple[str, str, int, int] | None:
        """(boot, pidns, pid, start) of an engine process's marker; None if it is not one."""
        parts = marker.split("/")
        if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
            return None
        return parts[0], parts[1], int(parts[2]), int(parts[3])


def this_process() -> Instance:
    pid = os.getpid()
    return Instance(socket.gethostname(), (PROC / "sys/kernel/random/boot_id").read_text().strip(), _pidns(), pid,
                    started_at(pid) or 0)


def alive(pid: int, started: int) -> bool:
    """Whether that very process still runs (not another that got its pid)."""
    return started_at(pid) == started


def sweep(me: Instance, attempt: str | None = None) -> list[int]:
    """Kill step processes of engine processes on this machine that are gone (or, given `attempt`, that
    attempt's, whoever started them); returns the pids killed."""
    killed = []
    for pid, marker, key in marked_processes():
        owner = Instance.parse(marker)
        if owner is None or not me.same_machine(owner[0], owner[1]):
            continue
        if (key == attempt) if attempt is not None else not alive(owner[2], owner[3]):
            if kill_process(pid):
                killed.append(pid)
    if killed:
        log.warning("killed %d leftover step processes of engine processes gone: %s", len(killed), killed)
    return killed


def _pidns() -> str:
    try:
        return os.readlink(PROC / "self/ns/pid")
    except OSError:
        return ""
