"""chmod/chown of system directories (PB406) and world-writable modes (PB407)."""
from __future__ import annotations

import re

from services.playbook.shell.model import Call, Report, literal, options
from services.playbook.shell.deletes import system_path

PROGRAMS = frozenset({"chmod", "chown", "chgrp"})
_OCTAL = re.compile(r"[0-7]{3,4}")
_SYMBOLIC = re.compile(r"([ugoa]*)([-+=])([rwxXst]*)")


def permissions(call: Call, report: Report) -> None:
    if call.name not in ("chmod", "chown", "chgrp"):
        return
    shown = call.shown()
    args = [literal(word) or word.value for word in call.args]
    recursive = any(a == "--recursive" or (a.startswith("-") and not a.startswith("--") and "R" in a) for a in args)
    if call.name == "chmod":
        modes = [a for a in args if _OCTAL.fullmatch(a) or all(_SYMBOLIC.fullmatch(c) for c in a.split(","))]
        mode = modes[0] if modes and "--reference" not in " ".join(args) else ""
        targets = [a for a in args if a != mode and not a.startswith("-")]
    else:
        mode, targets = "", [literal(word) or word.value for word in options(call.args).operands[1:]]
    worst = next((what for target in targets if (what := system_path(target)) and "working" not in what), None)
    if call.name == "chmod" and _world_writable(mode):
        if worst:
            report.add("PB406", call.at, f"'{shown}' makes {worst} writable by every user, so any local process can "
                                         "replace system files; give the exact files the permissions they need "
                                         "(e.g. 755/644)")
        else:
            report.add("PB407", call.at, f"'{shown}' makes files writable by every user (mode {mode}); grant write "
                                         "access to the owner or a group instead (e.g. 775/664 with chgrp)")
    elif recursive and worst and (call.name != "chmod" or worst.endswith("(/)")):
        report.add("PB406", call.at, f"'{shown}' recursively changes the ownership or permissions of {worst}, which "
                                     "breaks sudo, ssh and services that check them; change only the directory you "
                                     "mean")


def _world_writable(mode: str) -> bool:
    if _OCTAL.fullmatch(mode):
        return bool(int(mode, 8) & 0o002)
    return any((m := _SYMBOLIC.fullmatch(clause)) and ({"a", "o"} & set(m[1])) and m[2] in "+=" and "w" in m[3]
               for clause in mode.split(",") if mode)
