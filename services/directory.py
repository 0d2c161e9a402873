"""Who belongs to which group: a YAML file `users: {name: [groups]}` configured for the engine.

The settings' `directory_path` (`$PLAYBOOK_DIRECTORY`, else `$PLAYBOOK_HOME/directory.yaml`),
read again when it changes. Tokens say who a caller is; this only says what groups they are in.
User names must be written canonically (`alice`, not `Alice` or a look-alike): a name that
is not would never match its verified principal, so the file is refused, saying which.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from services.errors import PlaybookError
from services.identity.names import is_normal, normalise_name


class Directory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: tuple[float, dict[str, list[str]]] | None = None

    def groups_of(self, user: str) -> list[str]:
        return list(self._users().get(user, []))

    def check(self) -> None:
        """Read the file now: PlaybookError, naming the file, if it is not valid (an engine checks at start)."""
        self._users()

    def _users(self) -> dict[str, list[str]]:
        path = self.path
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return {}
        if self._cache and self._cache[0] == mtime:
            return self._cache[1]
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise PlaybookError(f"{path}: the directory is not valid YAML: {err}") from err
        users = data.get("users", {}) if isinstance(data, dict) else {}
        parsed = {str(name): [str(g) for g in (groups or [])] for name, groups in users.items()}
        for name in parsed:
            if not is_normal(name):
                raise PlaybookError(f"{path}: user {name[:80]!r} is not written as a principal name: {_advice(name)}")
        self._cache = (mtime, parsed)
        return parsed


def _advice(name: str) -> str:
    try:
        return f"write {normalise_name(name)!r}"
    except PlaybookError as err:
        return str(err)
