"""Secrets on disk: `$PLAYBOOK_HOME/credentials/`, a directory only its owner can enter.

    credentials/              0700
      token                   0600  the local admin's API token (pbt_...): the CLI's default credential
      nats-server.conf        0600  the embedded server's users and permissions
      nats-<role>.json        0600  {"user", "password"} of one NATS user: engine, executor, web, client, agent

A NATS login is read here, apart from the users' permissions and the server's configuration
(`services.identity.nats_users`, which writes them): every CLI command reads its login.

Files are written whole (a temporary file, then a rename), never readable by others, and a
file someone opened up to others is refused on reading, as ssh refuses a private key.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Literal, NamedTuple

from services.errors import AccessDenied, PlaybookError
from services.owners import owner_of, user_name

TOKEN_FILE = "token"
NatsRole = Literal["engine", "executor", "web", "client", "agent"]


class NatsLogin(NamedTuple):     # not a dataclass: `playbook --help` reads this module, and loads no dataclasses
    user: str
    password: str

    def connect_options(self) -> dict[str, str]:
        """Keyword arguments for `nats.connect`."""
        return {"user": self.user, "password": self.password}


def credentials_dir(home: Path) -> Path:
    return home / "credentials"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_secret(home: Path, name: str, text: str) -> Path:
    """Write `credentials/<name>` with mode 0600, atomically; returns its path."""
    directory = _private_dir(credentials_dir(home))
    target = directory / name
    partial = directory / f".{name}.{os.getpid()}.tmp"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def read_secret(home: Path, name: str) -> str | None:
    """The file's text, None if absent; PlaybookError if group or others may read it."""
    path = credentials_dir(home) / name
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PlaybookError(f"{path} is open to other users (mode {stat.S_IMODE(mode):04o}); "
                                f"run `chmod 600 {path}` or delete it")
        return path.read_text().strip()
    except FileNotFoundError:
        return None
    except PermissionError:
        raise not_yours(path) from None


def not_yours(path: Path) -> AccessDenied:
    """A file of a PLAYBOOK_HOME this user may not read: most often the engine was started by another user
    (`sudo playbook up`), whose home only they may enter. Said with whose it is and what to do (exit 5)."""
    return AccessDenied(f"{path} cannot be read as {user_name(os.geteuid())}: {owner_of(path)}; run this as "
                        "that user, or give yourself a client login and a token of your own (NATS_URL with its "
                        "user and password, PLAYBOOK_TOKEN)", "unauthenticated")


def nats_login(role: NatsRole, home: Path) -> NatsLogin | None:
    """The login a process of this role uses, from `credentials/nats-<role>.json`; None without one."""
    text = read_secret(home, f"nats-{role}.json")
    if text is None:
        return None
    data = json.loads(text)
    return NatsLogin(str(data["user"]), str(data["password"]))
