"""Stored playbooks: YAML files in known folders, started by id instead of pasted text.

The folders are the settings' `library_folders`: `$PLAYBOOK_LIBRARY` (separated like
PATH), else `$PLAYBOOK_HOME/playbooks` and the bundled `examples/`. A playbook's id is
its file name without `.yaml`; the first folder holding an id wins.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True, slots=True)
class StoredPlaybook:
    id: str
    path: Path
    name: str
    description: str
    parameters: list[dict[str, Any]]      # as written, for forms; validation happens at start
    environments: list[str]

    def text(self) -> str:
        """The YAML; bytes that are not UTF-8 become U+FFFD, which validation then points at."""
        return self.path.read_text(errors="replace")


def stored_playbooks(folders: Sequence[Path]) -> list[StoredPlaybook]:
    found: dict[str, StoredPlaybook] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            if path.stem not in found and _ID.fullmatch(path.stem):
                found[path.stem] = _stored(path)
    return sorted(found.values(), key=lambda p: p.id)


def find_playbook(folders: Sequence[Path], playbook_id: str) -> StoredPlaybook | None:
    """The stored playbook with this id; ids never reach outside the folders."""
    if not _ID.fullmatch(playbook_id) or ".." in playbook_id:
        return None
    for folder in folders:
        path = folder / f"{playbook_id}.yaml"
        if path.is_file():
            return _stored(path)
    return None


def _stored(path: Path) -> StoredPlaybook:
    """Name and description for listings; a broken file is still listed, by its id."""
    import yaml   # here, not at the top: the CLI's `status` loads this module and reads no playbook
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None
    data = data if isinstance(data, dict) else {}
    parameters = data.get("parameters")
    parameters = [_plain(p) for p in parameters if isinstance(p, dict)] if isinstance(parameters, list) else []
    environments = data.get("environments")
    return StoredPlaybook(id=path.stem, path=path, name=str(data.get("name") or path.stem),
                          description=str(data.get("description") or ""), parameters=parameters,
                          environments=[str(e) for e in environments] if isinstance(environments, dict) else [])


def _plain(value: dict[Any, Any]) -> dict[str, Any]:
    """JSON-safe: YAML may hold dates and non-string keys."""
    plain: dict[str, Any] = json.loads(json.dumps(value, default=str, skipkeys=True))
    return plain
