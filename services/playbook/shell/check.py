"""One step's shell command checked: parse it, check every program it runs, say where each finding is.

Most commands name no program a check looks at and hold nothing decided at run time; a
screen over the text skips parsing them (it never skips a command a check could flag:
tests compare it with the full analysis). A `${...}` counts as decided at run time only
where a check reads it: as (part of) a program's name, a redirection's target, or after a
wrapper (`sudo`, `ssh`, ...) that may make it one; elsewhere it is an argument like any word.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from services.playbook.references import ReferenceSyntaxError, find_references
from services.playbook.shell.analysis import (argv_call, calls, mark_references, marked_text, top_code,
                                              written_offset)
from services.playbook.shell.code import PROGRAMS as CODE_PROGRAMS, code_checks
from services.playbook.shell.deletes import PROGRAMS as DELETE_PROGRAMS, deletes
from services.playbook.shell.disks import PROGRAMS as DISK_PROGRAMS, disks, redirects
from services.playbook.shell.forks import fork_bombs
from services.playbook.shell.model import Call, Code, Report, Risk
from services.playbook.shell.permissions import PROGRAMS as PERMISSION_PROGRAMS, permissions
from services.playbook.shell.syntax import REF_CLOSE, REF_OPEN, parse
from services.playbook.shell.wrappers import WRAPPER_NAMES


def _words(words: Iterable[str], before: str) -> str:
    """A regex for any of `words` where the character before is not in the class `before`.

    Each alternative starts with a plain character (`s(?<!Bs)udo` for `(?<!B)sudo`), so the regex engine
    passes over every position no word starts at: the screen runs on every command.
    """
    rests: dict[str, list[str]] = {}
    for word in sorted(words):
        rests.setdefault(word[0], []).append(re.escape(word[1:]))
    return "(?:" + "|".join(f"{re.escape(first)}(?<!{before}{re.escape(first)})(?:{'|'.join(ends)})"
                            for first, ends in rests.items()) + ")"


_NAMES = sorted(CODE_PROGRAMS | DELETE_PROGRAMS | DISK_PROGRAMS | PERMISSION_PROGRAMS | {"function", "while",
                                                                                        "until", "for"})
_IN_WORD = r"[^ \t\n\r\f\v;&|()<>]"
_PROGRAM = _words(_NAMES, r"[\w.+-]") + r"[\d.]*(?![\w+-])"
# Run-time values, globs, substitutions, devices, braces, quotes inside a word, or a program a check looks at.
_SCREEN = re.compile(r"[$`*?\[(\\" + REF_OPEN + r"]|/dev/|\{[^{}\s]*(?:,|\.\.)"
                     rf"|['\"](?<={_IN_WORD}['\"])|['\"]{{2}}[^ \t\n]|'[^']*'{_IN_WORD}|\"[^\"]*\"{_IN_WORD}"
                     rf"|{_PROGRAM}")

_REF = re.compile(f'"?{REF_OPEN}\\d+{REF_CLOSE}"?')
_BARE_REF = re.compile(f"{REF_OPEN}\\d+{REF_CLOSE}")  # `_REF` where no quote can be next to a reference
_NOT_WORD = r"\s;&|()<>"
# A reference in a command's first word (after separators, keywords, assignments and redirections: `> f ${x}` runs
# ${x}) or in a redirection's target: at the start of the command (`_FIRST_WORD_REF.match`), or after a separator
# or a keyword.
_FIRST_WORD_REF = re.compile(rf"\s*(?:(?:[A-Za-z_]\w*=[^{_NOT_WORD}]*|\d*[<>]+[&|]?\s*[^{_NOT_WORD}]+)\s+)*"
                             rf"[^{_NOT_WORD}]*{REF_OPEN}")
# `done ${x}` is not valid shell, but the parser reads on past such a keyword, and the screen must flag what it flags
_KEYWORD = _words(("if", "then", "do", "else", "elif", "time", "done", "fi", "esac"), r"\w") + r"\b"
_REF_READ = re.compile(rf"(?:[;&|(){{}}\n!`<>]|{_KEYWORD}){_FIRST_WORD_REF.pattern}")
_WRAPPER = re.compile(_words(WRAPPER_NAMES, r"[\w.+-]") + r"(?![\w+-])")


class ShellFinding(NamedTuple):
    code: str
    line: int  # 1-based, in the command as written
    column: int
    message: str


def check_command(command: str, variables: Mapping[str, str], risks: Mapping[str, Risk], *,
                  screen: bool = True) -> list[ShellFinding]:
    """Findings for a command run by `/bin/sh -c`, in the order they appear."""
    found = list(_raw_references(command)) if "raw:" in command else []  # every `${raw:...}` holds it
    if screen and not _needs_parsing(marked_text(command, variables) or mark_references(command, variables)[0]):
        return found
    marked, refs, reach = mark_references(command, variables)
    report = _report(risks)
    report.run_code(top_code(marked, refs))
    for (code, message), at in sorted(report.found.items(), key=lambda item: item[1]):
        line, column = _line_column(command, written_offset(reach, at))
        found.append(ShellFinding(code, line, column, message))
    return sorted(found, key=lambda f: (f.line, f.column))


def _needs_parsing(marked: str) -> bool:
    """False for a command no check could flag: the screen, with references where no check reads them as words."""
    if REF_OPEN in marked:
        if _FIRST_WORD_REF.match(marked) or _REF_READ.search(marked) or _WRAPPER.search(marked):
            return True
        marked = _REF.sub(_as_word, marked) if '"' in marked else _BARE_REF.sub("x", marked)
    return _SCREEN.search(marked) is not None


def _as_word(ref: re.Match[str]) -> str:
    """A reference as a plain word, keeping a quote it shares with other text (`"${x} and more"`)."""
    opened, closed = ref[0].startswith('"'), ref[0].endswith('"') and len(ref[0]) > 1
    return "x" if opened and closed else '"' * opened + "x" + '"' * closed


def check_argv(argv: list[str], variables: Mapping[str, str], risks: Mapping[str, Risk]) -> list[ShellFinding]:
    """Findings for a program and its arguments run without a shell."""
    call, _ = argv_call(argv, variables)
    if call is None:
        return []
    report = _report(risks)
    report.run_call(call)
    return [ShellFinding(code, 1, 1, message) for (code, message) in report.found]


def _report(risks: Mapping[str, Risk]) -> Report:
    report = Report(risks, lambda code: _code(code, report), lambda call: _call(call, report))
    return report


def _code(code: Code, report: Report) -> None:
    tree = parse(code.text)
    fork_bombs(tree, code, report)
    for call in calls(tree, code):
        _call(call, report)


def _call(call: Call, report: Report) -> None:
    redirects(call, report)
    deletes(call, report)
    disks(call, report)
    permissions(call, report)
    code_checks(call, report)


def _raw_references(command: str) -> Iterable[ShellFinding]:
    try:
        refs = find_references(command)
    except ReferenceSyntaxError:
        return
    for ref in refs:
        if ref.raw[2:].lstrip().startswith("raw:"):
            line, column = _line_column(command, ref.start)
            yield ShellFinding("PB411", line, column,
                               f"{ref.raw} inserts its value into the shell command unquoted, so spaces, quotes or "
                               f"';' in it become shell syntax; use ${{{ref.name}}} (quoted) unless the value must "
                               "be shell code, and then make sure it comes from a trusted source")


def _line_column(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset)
    return line + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1
