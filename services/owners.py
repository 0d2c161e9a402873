"""Whose a file is, said to a user who may not read it: the engine keeps its files private to the user that
runs it, and another user (or the engine as another user) meets them after `sudo playbook up` or a secrets
file made for root."""
from __future__ import annotations

import pwd
import stat
from pathlib import Path


def owner_of(path: Path) -> str:
    """Whose `path` is, said from the nearest directory around it this user may look at."""
    for around in (path, *path.parents):
        try:
            found = around.stat()
        except OSError:
            continue
        return f"{around} belongs to {user_name(found.st_uid)} (mode {stat.S_IMODE(found.st_mode):04o})"
    return "no directory around it can be looked at"


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
