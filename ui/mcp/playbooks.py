"""Which playbook a call means: YAML text, a file (stdio only), or a catalog `name@version`; and checking one."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from events.commands import StartRun
from services.playbook import validate_playbook
from ui.mcp.access import Refused
from ui.mcp.models import Finding, Validation

MAX_FILE_BYTES = 4 * 1024 * 1024
# An agent reads every finding into its context: 20,000 steps without a name were a 5 MB answer of infos.
MAX_FINDINGS = 200
_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True, slots=True)
class LocalFiles:
    """What `playbook_file` may read over stdio: a file of the server's user, but none of the engine's own (its
    home, with the local admin's credentials, and the secrets file). An agent holding a narrow token acts through
    this process as the user; what a diagnostic quotes of a file must not hand it the admin's token."""

    hidden: tuple[Path, ...] = ()

    def check(self, path: Path) -> None:
        resolved = path.resolve()
        if any(resolved == hidden or hidden in resolved.parents for hidden in self.hidden):
            raise Refused(f"{path}: playbook_file does not read the engine's own files ($PLAYBOOK_HOME, the "
                          "secrets file)", "bad_request")


def playbook_text(yaml: str | None, file: str | None, *, files: LocalFiles | None) -> tuple[str, str]:
    """The YAML and where it came from, given exactly one of text and file (`files`: None over HTTP)."""
    if (yaml is None) == (file is None):
        raise Refused("give exactly one of playbook_yaml (the YAML text) and playbook_file", "bad_request")
    if yaml is not None:
        return yaml, "<mcp>"
    assert file is not None
    if files is None:
        # Over HTTP the reader would be this server's user, not the caller: a path could name its credentials.
        raise Refused("playbook_file is read only over stdio; over HTTP send the YAML as playbook_yaml", "bad_request")
    path = Path(file).expanduser()
    files.check(path)
    try:
        # Not blocking: a FIFO would wait for a writer. Only a regular file: /dev/zero never ends, /dev/stdin is
        # the stdio transport's own input.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as opened:
            if not stat.S_ISREG(os.fstat(opened.fileno()).st_mode):
                raise Refused(f"{path}: not a regular file", "bad_request")
            data = opened.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise Refused(f"{path}: larger than {MAX_FILE_BYTES} bytes", "bad_request")
        return data.decode(), str(path)
    except (OSError, UnicodeDecodeError) as err:
        raise Refused(f"{path}: cannot read: {getattr(err, 'strerror', None) or err}", "bad_request") from None


def start_command(yaml: str | None, file: str | None, reference: str | None, *, files: LocalFiles | None,
                  **options: Any) -> StartRun:
    """A StartRun of the text or file, or of a catalog reference when this engine's StartRun knows `playbook_id`."""
    if reference is None:
        text, source = playbook_text(yaml, file, files=files)
        return StartRun(playbook=text, source=source, **options)
    if yaml is not None or file is not None:
        raise Refused("give one of playbook (a catalog name@version), playbook_yaml and playbook_file", "bad_request")
    if "playbook_id" not in StartRun.__struct_fields__:
        raise Refused(f"cannot start {reference!r}: this engine has no playbook catalog yet; give the YAML as "
                      "playbook_yaml (or playbook_file over stdio)", "unknown_playbook")
    try:
        return msgspec.convert({"playbook_id": reference, "source": reference, **options}, StartRun)
    except msgspec.ValidationError as err:      # a run id or option the contract refuses, as the engine would say
        raise Refused(f"cannot read StartRun command: {err}", "bad_request") from None


def validation(text: str, source: str, parameters: dict[str, Any] | None, environment: str | None) -> Validation:
    """The diagnostics `playbook validate` prints, as data."""
    found = validate_playbook(text, source, parameters=parameters, environment=environment)
    # Past the cap, the most severe first (a stable sort: each severity in file order).
    shown = found if len(found) <= MAX_FINDINGS else sorted(found, key=lambda d: _SEVERITY_ORDER[d.severity])
    findings = [Finding(**msgspec.to_builtins(d)) for d in shown[:MAX_FINDINGS]]
    errors = sum(1 for d in found if d.severity == "error")
    return Validation(valid=not errors, errors=errors, diagnostics=findings, left_out=len(found) - len(findings))
