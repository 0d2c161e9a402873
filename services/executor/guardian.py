"""The guardian: one small process per engine process, holding every step process group it starts.

Linux stops no child when its parent dies: a killed executor's shell steps would go on,
re-parented to init, while their attempts run again elsewhere. PR_SET_PDEATHSIG reaches
only the process that sets it (not its children), and setpriv's credential change clears
it. So every process group a step starts is handed to a guardian, in a session of its own,
that kills them all (SIGKILL) the moment the engine process is gone: it learns so when the
pipe it reads from reaches end of file, however the engine died. It also kills an
attempt's groups at that attempt's lease deadline, should the engine be too busy, stopped
or partitioned to do it itself, so that no step runs past the lease it holds.

This module is run as a script (`python -I -S guardian.py`, standard library only); the
engine side is `Guardian`. Lines on the pipe: `H <group> <attempt>` hold a group,
`F <group>` forget it, `D <attempt> <monotonic deadline>` an attempt's lease deadline,
`X <attempt>` the attempt is over.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

NO_ATTEMPT = "-"


class Guardian:
    """The engine side: starts the guardian on first use, and again if it dies."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
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

    def close(self) -> None:
        """Stop the guardian; it kills what it still holds (nothing, after a clean stop)."""
        process, self._process = self._process, None
        if process is not None and process.stdin is not None:
            process.stdin.close()
            process.wait()

    def _send(self, line: str) -> None:
        for _ in range(2):
            if self._process is None or self._process.poll() is not None:
                self._start()
            try:
                os.write(self._process.stdin.fileno(), line.encode())  # type: ignore[union-attr]
                return
            except OSError:   # it died: a new one gets everything held, then this line
                self._process = None

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, start_new_session=True)
        state = [f"H {g} {a}\n" for g, a in self._groups.items()]
        state += [f"D {a} {at:.3f}\n" for a, at in self._deadlines.items()]
        if state:
            os.write(self._process.stdin.fileno(), "".join(state).encode())  # type: ignore[union-attr]


def _kill(groups: list[int]) -> None:
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _guard(stdin: int) -> None:
    """The guardian's loop: keep the table, kill at deadlines, kill everything at end of file."""
    groups: dict[int, str] = {}
    deadlines: dict[str, float] = {}
    pending = b""
    while True:
        timeout = max(0.0, min(deadlines.values()) - time.monotonic()) if deadlines else None
        readable, _, _ = select.select([stdin], [], [], timeout)
        if readable:
            chunk = os.read(stdin, 65536)
            if not chunk:
                _kill(list(groups))
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                kind, _, rest = line.decode().partition(" ")
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
        now = time.monotonic()
        for attempt in [a for a, at in deadlines.items() if at <= now]:
            del deadlines[attempt]
            lapsed = [g for g, a in groups.items() if a == attempt]
            _kill(lapsed)
            for gone in lapsed:
                del groups[gone]
            print(f"guardian: the lease of {attempt} lapsed; killed process groups {lapsed}", file=sys.stderr)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a terminal's Ctrl-C is for the engine, which then closes us
    _guard(sys.stdin.fileno())
