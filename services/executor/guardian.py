"""The guardian: one small process per engine process, holding every step process group it starts.

Linux stops no child when its parent dies: a killed executor's shell steps would go on,
re-parented to init, while their attempts run again elsewhere. PR_SET_PDEATHSIG reaches
only the process that sets it (not its children), and setpriv's credential change clears
it. So every process group a step starts is handed to a guardian, in a session of its own,
that kills them all (SIGKILL) the moment the engine process is gone: it learns so when the
pipe it watches reaches end of file, however the engine died. It also kills an
attempt's groups at that attempt's lease deadline, should the engine be too busy, stopped
or partitioned to do it itself, so that no step runs past the lease it holds.

A group is handed over as soon as its process has started; a process that started moments
before its engine died, or that left its group, is found all the same: every step process
carries its engine process's identity (and its attempt's key) in its environment, and the
guardian kills every process so marked, with its group, after the groups it holds.

This module is run as a script (`python -I -S guardian.py <engine marker> <life fd>`,
standard library only); the engine side is `Guardian`. Lines on its standard input, the
table: `H <group> <attempt>` hold a group, `F <group>` forget it, `D <attempt> <monotonic
deadline>` an attempt's lease deadline, `X <attempt>` the attempt is over.
"""
from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

NO_ATTEMPT = "-"
OWNER_VARIABLE = "PLAYBOOK_STEP_OWNER"       # the engine process that started a step process (its marker)
ATTEMPT_VARIABLE = "PLAYBOOK_IDEMPOTENCY_KEY"
PROC = Path("/proc")
DRAIN = 0.1                # seconds between reads of the table


class Guardian:
    """The engine side: starts the guardian on first use, and again if it dies."""

    def __init__(self, marker: Callable[[], str]) -> None:
        self.marker = marker                     # this engine process, as its step processes name it
        self._process: subprocess.Popen[bytes] | None = None
        self._life = -1                          # the write end of the pipe whose end of file says we died
        self._groups: dict[int, str] = {}        # held group -> attempt
        self._deadlines: dict[str, float] = {}   # attempt -> monotonic deadline

    def hold(self, group: int, attempt: str | None) -> None:
        self._groups[group] = attempt or NO_ATTEMPT
        self._send(f"H {group} {attempt or NO_ATTEMPT}\n")

    def forget(self, group: int) -> None:
        if self._groups.pop(group, None) is not None:
            self._send(f"F {group}\n")

    def deadline(self, attempt: str, at: float) -> None:
        """Kill the attempt's groups at `at` (time.monotonic) unless moved again."""
        self._deadlines[attempt] = at
        self._send(f"D {attempt} {at:.3f}\n")

    def over(self, attempt: str) -> None:
        if self._deadlines.pop(attempt, None) is not None:
            self._send(f"X {attempt}\n")

    def _send(self, line: str) -> None:
        for _ in range(2):
            if self._process is None:
                self._start()
            try:
                os.write(self._process.stdin.fileno(), line.encode())  # type: ignore[union-attr]
                return
            except OSError:   # it died: a new one gets everything held, then this line
                self._process = None
                os.close(self._life)

    def _start(self) -> None:
        life, self._life = os.pipe()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), self.marker(), str(life)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True, env={}, pass_fds=(life,))
        finally:
            os.close(life)
        state = [f"H {g} {a}\n" for g, a in self._groups.items()]
        state += [f"D {a} {at:.3f}\n" for a, at in self._deadlines.items()]
        if state:
            os.write(self._process.stdin.fileno(), "".join(state).encode())  # type: ignore[union-attr]


def marked_processes() -> Iterator[tuple[int, str, str | None]]:
    """(pid, its engine process's marker, its attempt's key) of every step process this process may see."""
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        found = dict(item.decode(errors="replace").split("=", 1) for item in environ
                     if item.startswith((OWNER_VARIABLE.encode() + b"=", ATTEMPT_VARIABLE.encode() + b"=")))
        if OWNER_VARIABLE in found:
            yield int(entry.name), found[OWNER_VARIABLE], found.get(ATTEMPT_VARIABLE)


def kill_process(pid: int) -> bool:
    """SIGKILL the process and its group, sure through a pidfd that it is the process we looked at."""
    started = started_at(pid)
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if started is None or started_at(pid) != started:
            return False     # gone, or the pid was reused between our look and the pidfd
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    finally:
        os.close(fd)


def started_at(pid: int) -> int | None:
    """When the process started, in clock ticks after boot (/proc/<pid>/stat, field 22): with the pid, its
    identity."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])   # the name before ")" may hold spaces


def _kill(groups: list[int]) -> None:
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_marked(marker: str, attempt: str | None = None) -> None:
    """Every process this engine process started (for `attempt`, if given), held or not yet."""
    for pid, owner, key in marked_processes():
        if owner == marker and (attempt is None or key == attempt):
            kill_process(pid)


def _guard(table: int, life: int, marker: str) -> None:
    """The guardian's loop: kill everything when `life` reaches end of file (nothing else is ever written to it);
    read the table every DRAIN seconds (a wake-up per step process would cost the engine more); kill an
    attempt's processes when its deadline passes, after reading every later deadline there is."""
    groups: dict[int, str] = {}
    deadlines: dict[str, float] = {}
    pending = b""
    os.set_blocking(table, False)
    while True:
        timeout = min([DRAIN, *(max(0.0, at - time.monotonic()) for at in deadlines.values())])
        died, _, _ = select.select([life], [], [], timeout)
        while True:
            try:
                chunk = os.read(table, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                _apply(line.decode(), groups, deadlines)
        if died:
            _kill(list(groups))
            _kill_marked(marker)
            return
        now = time.monotonic()
        for attempt in [a for a, at in deadlines.items() if at <= now]:
            del deadlines[attempt]
            lapsed = [g for g, a in groups.items() if a == attempt]
            _kill(lapsed)
            for gone in lapsed:
                del groups[gone]
            _kill_marked(marker, attempt)
            print(f"guardian: the lease of {attempt} lapsed; killed its processes", file=sys.stderr)


def _apply(line: str, groups: dict[int, str], deadlines: dict[str, float]) -> None:
    kind, _, rest = line.partition(" ")
    if kind == "H":
        group, attempt = rest.split(" ", 1)
        groups[int(group)] = attempt
    elif kind == "F":
        groups.pop(int(rest), None)
    elif kind == "D":
        attempt, at = rest.rsplit(" ", 1)
        deadlines[attempt] = float(at)
    elif kind == "X":
        deadlines.pop(rest, None)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a terminal's Ctrl-C is for the engine, which then closes us
    _guard(sys.stdin.fileno(), int(sys.argv[2]), sys.argv[1])
