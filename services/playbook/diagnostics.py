"""What validation reports: coded findings that name the file, line, step and field."""
from __future__ import annotations

import difflib
import string
from collections.abc import Collection, Iterable, Iterator, Mapping, Set
from typing import Literal, NamedTuple

import msgspec

from services.errors import PlaybookError

Severity = Literal["error", "warning", "info"]
Path = tuple[str | int, ...]

CODES: dict[str, str] = {
    "PB000": "internal error in the validator",
    "PB001": "YAML syntax error",
    "PB002": "document is not a mapping",
    "PB003": "duplicate key",
    "PB004": "playbook larger than the engine takes (bytes, steps or values)",
    "PB101": "unknown key",
    "PB102": "missing required key",
    "PB103": "wrong type",
    "PB104": "value not allowed",
    "PB105": "no steps",
    "PB106": "`when` text that compares (==, and, not ...): text is only tested for being empty",
    "PB107": "action argument unknown, missing, of the wrong type or not allowed (a `${...}` value is checked "
             "when the step runs)",
    "PB201": "duplicate step id",
    "PB202": "invalid step id",
    "PB203": "unknown step in depends_on",
    "PB204": "dependency cycle",
    "PB205": "parallel group split by another step",
    "PB206": "unknown action",
    "PB207": "unknown name in ${...}",
    "PB208": "unknown step in ${steps...}",
    "PB209": "step output used before that step is sure to have run",
    "PB210": "malformed ${...} reference",
    "PB211": "parameter in a URL's scheme or authority (not typed host or url)",
    "PB212": "variables that refer to each other in a circle",
    "PB213": "an output the step never has: in ${steps.<id>.<output>}, a validation's or rollback's ${...}, an "
             "export's from",
    "PB301": "missing required parameter",
    "PB302": "parameter value has the wrong type",
    "PB303": "parameter value not among its choices",
    "PB304": "unknown environment",
    "PB305": "unknown parameter given",
    "PB306": "parameter declared twice",
    "PB307": "parameter value not allowed by its pattern or allowed_hosts",
    "PB308": "a variable only environments set is used, and the run's environment does not set it",
    "PB401": "recursive delete (rm -r, find -delete, rsync --delete, git clean, ...) of the root, a system or home "
             "directory, or rm --no-preserve-root",
    "PB402": "recursive delete of a path that starts with a value that may be empty",
    "PB403": "recursive delete of a path that starts with a parameter a caller can set to anything",
    "PB404": "command that overwrites a disk (mkfs, dd of=/dev/..., cp to a device, partitioning, wipefs, blkdiscard)",
    "PB405": "output written onto a device",
    "PB406": "chmod/chown of the root or a system directory",
    "PB407": "chmod to a world-writable mode",
    "PB409": "fork bomb (a function starting copies of itself, an endless loop spawning processes)",
    "PB410": "downloaded code run without checking it",
    "PB411": "${raw:...} in a shell command",
    "PB412": "eval or sh -c of a ${...} value",
    "PB413": "program name decided at run time or disguised (variable, substitution, glob, quotes inside it)",
    "PB414": "code no check can read run by a shell or interpreter (decoded, generated or piped in)",
    "PB415": "interpreter code (python -c, perl -e, ...) that starts programs or deletes directory trees",
    "PB416": "recursive delete of paths read at run time (xargs rm -r)",
    "PB420": "hardcoded credential",
    "PB421": "string that looks like a random key or token",
    "PB422": "credentials in a plain http URL",
    "PB423": "credentials sent over plain http",
    "PB501": "step has no name",
    "PB502": "shell step, rollback action or remediation without timeout_seconds",
    "PB503": "environment sets a name nothing uses",
    "PB504": "another tool's spelling of a key, read as this language's",
    "PB505": "what a run must be given, when validating without --env and -p: a required parameter without a "
             "default, or --env for a variable only environments set",
    "PB601": "what past runs recommend (`validate --insights`)",
}
_INFOS = {"PB501", "PB504", "PB505", "PB601"}
_RISKY = {"PB403", "PB407", "PB411", "PB412", "PB415", "PB421", "PB423"}  # security findings that warn, not stop


def severity_of(code: str) -> Severity:
    """PB5xx are advice (warnings, a few infos), PB6xx what past runs taught, risky PB4xx warn; the rest are errors."""
    if code in _RISKY:
        return "warning"
    if not code.startswith(("PB5", "PB6")):
        return "error"
    return "info" if code in _INFOS else "warning"


class Diagnostic(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    severity: Severity
    message: str
    file: str
    line: int | None = None
    column: int | None = None
    step_id: str | None = None
    field: str | None = None

    def format(self) -> str:
        place = self.file
        if self.line is not None:
            place += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        step = f" [step {self.step_id}]" if self.step_id else ""
        return f"{place}: {self.severity} {self.code}{step} {self.message}"

    def __str__(self) -> str:
        return self.format()


class PlaybookInvalid(PlaybookError):
    """The playbook (or the values given for it) cannot run; `diagnostics` say why and where."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.severity == "error"] or diagnostics
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{errors[0]}{more}" if errors else "invalid playbook")


class Issue(NamedTuple):
    """A finding before it has a place in the file: checkers speak in data paths."""

    code: str
    message: str
    path: Path = ()
    on_key: bool = False
    step_id: str | None = None
    in_file: bool = True  # False when the problem is in the caller's values, not in the text


def format_path(path: Path) -> str:
    """`("steps", 2, "depends_on")` -> `steps[2].depends_on`, the way a user would point at it."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{str(part)!r}]"
    return text


def diagnostic(issue: Issue, file: str, line: int | None = None, column: int | None = None,
               step_id: str | None = None) -> Diagnostic:
    return Diagnostic(code=issue.code, severity=severity_of(issue.code), message=issue.message, file=file,
                      line=line, column=column, step_id=issue.step_id or step_id,
                      field=format_path(issue.path) or None)


def raise_if_errors(issues: Iterable[Issue], file: str = "<playbook>") -> None:
    """For callers without the YAML text: errors become `PlaybookInvalid` without line numbers."""
    diagnostics = [diagnostic(issue, file) for issue in issues]
    if any(d.severity == "error" for d in diagnostics):
        raise PlaybookInvalid(diagnostics)


def short(value: object) -> str:
    """A value as a finding quotes it: its repr, cut to 60 characters (a finding is read, not scrolled)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """` — did you mean 'x'?` when a candidate is close, else nothing.

    Up to `_COMPARED` candidates are each compared with the word; from a larger set (the
    step ids of a big playbook, asked once per unknown name) only names one edit away are
    looked up, so a hint costs the same whatever the size of the playbook.
    """
    if isinstance(candidates, (Set, Mapping)) and len(candidates) > _COMPARED:
        close = sorted(_one_edit_away(word, candidates),
                       key=lambda name: -difflib.SequenceMatcher(None, word, name).ratio())[:1]
    else:
        close = difflib.get_close_matches(word, [c for c in candidates if isinstance(c, str)], n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


def listing(names: Iterable[str], most: int = 20) -> str:
    """`a, b, c` — or the first `most` of them and how many more, so a message stays short."""
    names = list(names)
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


class Names(Collection[str]):
    """Names a playbook's words are checked against, with "did you mean" hints for the first `_HINTED` misses.

    A playbook may misspell a name in each of its 100,000 steps; past the first hundred a
    hint helps nobody, and each costs a look through the names.
    """

    def __init__(self, names: Collection[str]) -> None:
        self.names = names
        self._left = _HINTED
        self._listed: str | None = None

    def __contains__(self, word: object) -> bool:
        return word in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def hint(self, word: str) -> str:
        """`did_you_mean` while hints are left."""
        if self._left <= 0:
            return ""
        self._left -= 1
        return did_you_mean(word, self.names)

    def listing(self) -> str:
        """The names, sorted and shortened (see `listing`), worked out once."""
        if self._listed is None:
            self._listed = listing(sorted(self.names))
        return self._listed


_COMPARED = 100
_HINTED = 100
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_-.")


def _one_edit_away(word: str, names: Set[str] | Mapping[str, object]) -> list[str]:
    """The names one deletion, insertion, replacement or swap of neighbours away from `word`, in a stable order."""
    if len(word) > 64:
        return []
    alphabet = sorted(_NAME_CHARS | set(word))
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    variants = [a + b[1:] for a, b in splits if b]
    variants += [a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1]
    variants += [a + c + b[1:] for a, b in splits if b for c in alphabet if c != b[0]]
    variants += [a + c + b for a, b in splits for c in alphabet]
    return [name for name in dict.fromkeys(variants) if name != word and name in names]
