"""The engine's secret source for `${secret:NAME}`: environment variables, then a file.

`PLAYBOOK_SECRET_<NAME>` (NAME upper-cased, `-./` as `_`) wins; else the YAML or JSON
mapping in `$PLAYBOOK_SECRETS_FILE`. Values are read when a step runs, used in that
step only, and redacted (`***`) from everything the engine records.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

_NOT_ENV = re.compile(r"[^A-Za-z0-9_]")


class SecretSource:
    def __init__(self, environ: os._Environ[str] | dict[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self._file_cache: tuple[Path, float, dict[str, Any]] | None = None

    def get(self, name: str) -> str | None:
        value = self.environ.get("PLAYBOOK_SECRET_" + _NOT_ENV.sub("_", name).upper())
        if value is not None:
            return value
        found = self._file().get(name)
        return None if found is None else str(found)

    def _file(self) -> dict[str, Any]:
        path_text = self.environ.get("PLAYBOOK_SECRETS_FILE")
        if not path_text:
            return {}
        path = Path(path_text)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return {}
        if self._file_cache and self._file_cache[0] == path and self._file_cache[1] == mtime:
            return self._file_cache[2]
        data = yaml.safe_load(path.read_text()) or {}
        secrets = data if isinstance(data, dict) else {}
        self._file_cache = (path, mtime, secrets)
        return secrets


def allowed_environment(environ: os._Environ[str] | dict[str, str] | None = None) -> dict[str, str]:
    """The engine variables `${env.NAME}` may read: only those named in PLAYBOOK_ENV_ALLOW."""
    environ = os.environ if environ is None else environ
    names = [n.strip() for n in environ.get("PLAYBOOK_ENV_ALLOW", "").split(",") if n.strip()]
    return {name: environ[name] for name in names if name in environ}
