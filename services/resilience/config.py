"""What the engine's configuration adds to every playbook's resilience.

`$PLAYBOOK_ERROR_PATTERNS`: a YAML list of `{regex, category}`, tried before the
built-in table. `$PLAYBOOK_ERROR_HANDLERS`: a YAML list of error handlers, written as
in a playbook's `error_handlers`, tried after the playbook's own. A bad file stops the
service at start, naming the file and what is wrong.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from events.playbook import ErrorHandler
from services.errors import PlaybookError
from services.domain.classify import Pattern


def _read(variable: str, what: str, kind: Any, environ: Mapping[str, str] | None) -> Any:
    path = (os.environ if environ is None else environ).get(variable)
    if not path:
        return []
    try:
        return msgspec.convert(yaml.safe_load(Path(path).read_text()) or [], kind)
    except (OSError, yaml.YAMLError, msgspec.ValidationError) as err:
        raise PlaybookError(f"{path} (${variable}): cannot read the {what}: {err}") from err


def configured_patterns(environ: Mapping[str, str] | None = None) -> list[Pattern]:
    return _read("PLAYBOOK_ERROR_PATTERNS", "error patterns", list[Pattern], environ)


def configured_handlers(environ: Mapping[str, str] | None = None) -> list[ErrorHandler]:
    return _read("PLAYBOOK_ERROR_HANDLERS", "error handlers", list[ErrorHandler], environ)
