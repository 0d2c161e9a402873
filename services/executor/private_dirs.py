"""Private directories for step processes: HOME, TMPDIR and default working directory, mode 0700, one owner.

A directory a process left empty, with its owner and mode unchanged, is kept for the next
process of that owner: making and removing one costs a journal write each on a disk-backed
/tmp, as much as starting the process. One left with anything in it is removed, in a thread.
"""
from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import stat
import tempfile

Owner = tuple[int, int] | None   # (uid, gid) to hand it to; None: the engine's own user
KEPT = 64                         # empty directories kept per owner, at most


class PrivateDirs:
    def __init__(self) -> None:
        self._free: dict[Owner, list[str]] = {}
        atexit.register(self._remove_kept)

    def take(self, owner: Owner) -> str:
        """An empty directory that only `owner` may use."""
        free = self._free.get(owner)
        if free:
            return free.pop()
        path = tempfile.mkdtemp(prefix="playbook-step-")
        if owner is not None:
            os.chown(path, *owner)
        return path

    def give_back(self, path: str, owner: Owner) -> None:
        """The process is over: keep the directory if it is as it was made, else remove it and all in it."""
        free = self._free.setdefault(owner, [])
        if len(free) < KEPT and _as_made(path, owner):
            free.append(path)
            return
        try:
            os.rmdir(path)
        except OSError:
            asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, path, True)

    def _remove_kept(self) -> None:
        for free in self._free.values():
            for path in free:
                shutil.rmtree(path, ignore_errors=True)
            free.clear()


def _as_made(path: str, owner: Owner) -> bool:
    """Empty, mode 0700, still its owner's: nothing of the last process can reach the next."""
    try:
        info = os.lstat(path)
        with os.scandir(path) as entries:
            empty = next(entries, None) is None
    except OSError:
        return False
    uid, gid = owner if owner is not None else (os.geteuid(), os.getegid())
    return empty and stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 \
        and (info.st_uid, info.st_gid) == (uid, gid)
