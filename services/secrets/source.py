"""The engine's secret source for `${secret:NAME}`: environment variables, then a file.

`PLAYBOOK_SECRET_<NAME>` (NAME upper-cased, `-./` as `_`) wins, with the hosts it may be
sent to in `PLAYBOOK_SECRET_<NAME>_ALLOWED_HOSTS` (comma-separated); else the YAML or JSON
mapping in `$PLAYBOOK_SECRETS_FILE`, of NAME to a value or to `{value: ..., allowed_hosts:
[...]}`. Values are read when a step runs. One shorter than MIN_SECRET_LENGTH characters is
refused: redaction could not tell it from ordinary text.
"""
from __future__ import annotations

import os
import stat
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from services.errors import PlaybookError

MIN_SECRET_LENGTH = 8
HOSTS_SUFFIX = "_ALLOWED_HOSTS"
_NOT_ENV = re.compile(r"[^A-Za-z0-9_]")
_LINE_BREAKS = re.compile(r"[\r\n]")


class SecretRefused(PlaybookError):
    """The secret exists but may not be used: too short to redact, or badly written down."""


class Secret(NamedTuple):
    name: str
    value: str
    allowed_hosts: tuple[str, ...] | None = None   # None: it may be sent anywhere


class SecretSource:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self._file_cache: tuple[Path, float, dict[str, Any]] | None = None

    def secret(self, name: str) -> Secret | None:
        """The secret called `name`, or None if there is none; raises SecretRefused if it may not be used."""
        key = "PLAYBOOK_SECRET_" + _NOT_ENV.sub("_", name).upper()
        value = None if key.endswith(HOSTS_SUFFIX) else self.environ.get(key)
        if value is not None:
            hosts = self.environ.get(key + HOSTS_SUFFIX)
            found = Secret(name, value, None if hosts is None else _hosts(name, hosts.split(",")))
        elif (entry := self._file().get(name)) is not None:
            found = _from_file(name, entry)
        else:
            return None
        if len(_LINE_BREAKS.sub("", found.value)) < MIN_SECRET_LENGTH:
            raise SecretRefused(f"secret {name!r} is shorter than {MIN_SECRET_LENGTH} characters, too short to be "
                                "told apart from ordinary output and redacted; give it a longer value")
        return found

    def get(self, name: str) -> str | None:
        """The value of the secret called `name`, or None."""
        found = self.secret(name)
        return None if found is None else found.value

    @property
    def file(self) -> Path | None:
        """The secrets file ($PLAYBOOK_SECRETS_FILE), if there is one."""
        path_text = self.environ.get("PLAYBOOK_SECRETS_FILE")
        return Path(path_text) if path_text else None

    def open_to_others(self) -> str | None:
        """What to say when the secrets file may be read by other users of the machine; None when it may not."""
        if (path := self.file) is None:
            return None
        try:
            mode = path.stat().st_mode
        except OSError:
            return None
        if not mode & (stat.S_IRWXG | stat.S_IRWXO):
            return None
        return (f"the secrets file {path} may be read by other users (mode {stat.S_IMODE(mode):04o}): "
                f"run `chmod 600 {path}`")

    def _file(self) -> dict[str, Any]:
        path = self.file
        if path is None:
            return {}
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return {}
        if self._file_cache and self._file_cache[0] == path and self._file_cache[1] == mtime:
            return self._file_cache[2]
        import yaml   # only when a secrets file is asked: the CLI builds a SecretSource on every start
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except PermissionError:   # made for root (as docs/security.md advises) while the engine runs as a user
            from services.owners import owner_of, user_name
            raise SecretRefused(f"the secrets file {path} cannot be read by the engine, which runs as "
                                f"{user_name(os.geteuid())}: {owner_of(path)}; give that user alone the right "
                                "to read it (chown, chmod 600)") from None
        secrets = data if isinstance(data, dict) else {}
        self._file_cache = (path, mtime, secrets)
        return secrets


def _from_file(name: str, entry: Any) -> Secret:
    if not isinstance(entry, dict):
        return Secret(name, str(entry))
    if unknown := set(entry) - {"value", "allowed_hosts"}:
        raise SecretRefused(f"secret {name!r} in the secrets file has unknown keys {sorted(unknown)}; "
                            "give 'value' and optionally 'allowed_hosts'")
    value, hosts = entry.get("value"), entry.get("allowed_hosts")
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise SecretRefused(f"secret {name!r} in the secrets file has no text 'value'")
    if hosts is not None and not isinstance(hosts, (list, str)):
        raise SecretRefused(f"secret {name!r} in the secrets file: 'allowed_hosts' must be a list of hosts")
    return Secret(name, str(value), None if hosts is None else _hosts(name, [hosts] if isinstance(hosts, str)
                                                                              else hosts))


def _hosts(name: str, patterns: list[Any]) -> tuple[str, ...]:
    from services.hosts import pattern_problem   # here: every process holds a source, few read hosts from it
    hosts = tuple(str(p).strip() for p in patterns if str(p).strip())
    for pattern in hosts:
        if problem := pattern_problem(pattern):
            raise SecretRefused(f"secret {name!r}: allowed_hosts: {problem}")
    return hosts


def allowed_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The engine variables `${env.NAME}` may read: only those named in PLAYBOOK_ENV_ALLOW."""
    environ = os.environ if environ is None else environ
    names = [n.strip() for n in environ.get("PLAYBOOK_ENV_ALLOW", "").split(",") if n.strip()]
    return {name: environ[name] for name in names if name in environ}
