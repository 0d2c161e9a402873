"""Recursive deletes by any tool (PB401-PB403, PB416): `rm -r`, `find -delete`, `xargs rm`, `rsync --delete`.

A path that starts with a value the analysis cannot see may be empty or anything:
`rm -rf ${dir}/` with an empty `dir` is `rm -rf /`.
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

from services.playbook.references import Reference
from services.playbook.shell.model import Call, Report, Risk, Word, leading_hole, literal, options, text_word
from services.playbook.shell.wrappers import unwrap
from services.playbook.shell.syntax import Part

_SYSTEM_PARENTS = {"usr", "bin", "sbin", "boot", "lib", "lib32", "lib64", "libx32", "home", "etc"}
_SYSTEM_DIRECTORIES = {"/var/lib", "/var/spool", "/var/backups", "/var/mail"}
_DELETERS = {"rm", "unlink", "shred", "rmdir", "srm", "wipe"}
PROGRAMS = frozenset({"rm", "srm", "find", "rsync", "git", "xargs"})  # what these checks look at
_FIND_VALUES = frozenset({"-D", "-O"})
_RSYNC_VALUES = frozenset("-e --rsh -f --filter --exclude --include --exclude-from --include-from --files-from "
                          "--chmod --chown --rsync-path --password-file --log-file --backup-dir --suffix --timeout "
                          "--bwlimit -M --remote-option --compare-dest --link-dest --copy-dest -T --temp-dir "
                          "--partial-dir --max-size --min-size --port --out-format --usermap --groupmap".split())
_RSYNC_DELETES = {"delete", "delete-before", "delete-during", "delete-after", "delete-delay", "delete-excluded", "del"}
_GIT_VALUES = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace"})
_DEFAULT = re.compile(r":?[-=](.*)", re.DOTALL)
FIX_PATH = ("anchor the path under a fixed directory (e.g. /tmp/work/${dir}), "
            "or for a shell variable write \"${DIR:?}\" so an empty value stops the command")


def deletes(call: Call, report: Report) -> None:
    if call.name in ("rm", "srm"):
        _rm(call, report)
    elif call.name == "find":
        _find(call, report)
    elif call.name == "rsync":
        _rsync(call, report)
    elif call.name == "git":
        _git_clean(call, report)


def _rm(call: Call, report: Report) -> None:
    opts = options(call.args)
    shown = call.shown()
    if "no-preserve-root" in opts.long:
        report.add("PB401", call.at, f"'{shown}' uses --no-preserve-root, which lets rm delete the whole filesystem; "
                                     "remove the flag and name the directory to delete")
    if {"r", "R"} & opts.short or "recursive" in opts.long:
        _targets(call, opts.operands, report, shown)


def _targets(call: Call, operands: list[Word], report: Report, shown: str) -> None:
    """Each path a recursive delete removes, and the paths xargs hands it from its input."""
    for word in operands:
        check_target(word, call, report, shown, "deletes")
    if call.xargs is None:
        return
    items = stdin_paths(call)
    if items is None:
        report.add("PB416", call.at, f"'{shown}' recursively deletes paths read from its input at run time, which "
                                     "no check can see (an empty line or '/' deletes far more than meant); delete "
                                     "named paths, or use find DIR ... -delete under a fixed directory")
    for word in items or []:
        check_target(word, call, report, shown, "deletes")


def stdin_paths(call: Call) -> list[Word] | None:
    """What `xargs` reads, when the producer shows it: `find DIR`, `ls DIR`, `echo PATHS`; None when unseen."""
    producer = call.feeds[0] if call.feeds else None
    if not isinstance(producer, Call):
        return None
    if producer.name == "find":
        return find_starts(producer)
    if producer.name == "ls":
        operands = options(producer.args).operands or [text_word(".", producer.at)]
        return [text_word(posixpath.join(literal(w) or "value", "*"), w.start) for w in operands]
    if producer.name in ("echo", "printf"):
        return [w for w in producer.args if not (literal(w) or "").startswith("-")]
    return None


def check_target(word: Word, call: Call, report: Report, shown: str, verb: str) -> None:
    """PB401-PB403 for one path a command deletes (or empties) recursively."""
    first = leading_hole(word)
    refs = call.code.refs
    risk = _risk(first, report, refs) if first is not None and not _special(first) else None
    if risk == "empty":
        empty = _fill(word, report, refs, empty=True)
        when_empty = f" (when it is empty, this deletes {empty})" if empty else ""
        report.add("PB402", call.at, f"'{shown}' {verb} a path that starts with {_show_hole(first, call)}, a value "
                                     f"that may be empty or anything{when_empty}; {FIX_PATH}")
    elif risk == "set":
        report.add("PB403", call.at, f"'{shown}' {verb} a path that starts with {_show_hole(first, call)}, which a "
                                     f"caller can set to anything (including /); {FIX_PATH}")
    else:  # nothing unknown leads the path, or a guarded value (`${DIR:?}`, `${DIR:-/srv}`) does
        full, emptied = (_at(call, _fill(word, report, refs, empty=e)) for e in (False, True))
        what, what_empty = system_path(full), system_path(emptied)
        when_empty = f" when a value in {call.code.show(word)} is empty; {FIX_PATH}"
        if what and full == emptied:
            report.add("PB401", call.at, f"'{shown}' recursively {verb} {what}; name the specific directory you mean")
        elif what:
            report.add("PB401", call.at, f"'{shown}' recursively {verb} {what_empty or what}{when_empty}")
        elif what_empty:
            report.add("PB402", call.at, f"'{shown}' recursively {verb} {what_empty}{when_empty}")


def _at(call: Call, path: str) -> str:
    """A relative path from the directory an earlier `cd` moved to."""
    if call.cwd and path and not path.startswith(("/", "~")):
        return posixpath.join(call.cwd, path)
    return path


def _show_hole(part: Part, call: Call) -> str:
    if part.kind == "ref":
        return call.code.refs[int(part.text)].raw
    if part.kind == "param":
        return f"${{{part.text}{part.modifier}}}" if part.modifier else f"${part.text}"
    return "$(...)"


def _special(part: Part) -> bool:
    return part.kind == "param" and part.text in ("HOME", "PWD") and not part.modifier


def _risk(part: Part, report: Report, refs: list[Reference]) -> Risk:
    """How much is known about a value: may be empty, set (but to anything), or guarded."""
    if part.kind == "param":
        guarded = part.modifier.startswith(":?") or re.match(r":?[-=]\S", part.modifier)
        return "safe" if guarded else "empty"
    if part.kind == "ref":
        ref = refs[int(part.text)]
        return report.risks.get(ref.name.split(".")[0], "empty") if ref.kind == "name" else "empty"
    return "empty"


def _fill(word: Word, report: Report, refs: list[Reference], *, empty: bool) -> str:
    """The path a word names when every value that may be empty is (or none is) empty."""
    pieces = []
    for part in word.parts:
        if part.kind == "text":
            pieces.append(part.text)
        elif _special(part):
            pieces.append("~" if part.text == "HOME" else ".")
        elif empty and part.kind == "param" and (default := _DEFAULT.match(part.modifier)):
            pieces.append(default[1])  # `${DIR:-/}`: what an unset value becomes
        else:
            pieces.append("" if empty and _risk(part, report, refs) == "empty" else "value")
    return "".join(pieces)


def system_path(path: str) -> str | None:
    """What is lost if `path` is deleted recursively, when that is the root, a system or home directory."""
    if path.startswith("~"):
        rest = posixpath.normpath(path.partition("/")[2] or ".")
        return "the home directory" if rest in (".", "*", ".*") or rest.startswith("..") else None
    if not path.startswith("/"):
        parts = posixpath.normpath(path).split("/") if path else []
        return "the working directory" if parts and all(p in (".", "..", "*", ".*") for p in parts) else None
    parts = [p for p in posixpath.normpath(path).split("/") if p]
    if not parts:
        return "the whole filesystem (/)"
    glob = [any(c in p for c in "*?[") for p in parts]
    if glob[0] or len(parts) == 1:
        return f"the top-level directory /{parts[0]}" if not glob[0] else f"everything under / ({path})"
    if len(parts) == 2 and glob[1]:
        return f"everything in /{parts[0]}"
    if len(parts) == 2 and (parts[0] in _SYSTEM_PARENTS or "/" + "/".join(parts) in _SYSTEM_DIRECTORIES):
        return f"the system directory /{'/'.join(parts)}"
    if glob[-1] and not any(glob[:-1]) and system_path("/" + "/".join(parts[:-1])):
        return f"everything in /{'/'.join(parts[:-1])}"
    return None


def find_starts(call: Call) -> list[Word]:
    """The directories `find` walks (`.` when none is named)."""
    i = 0
    while i < len(call.args) and (literal(call.args[i]) or "") in ("-H", "-L", "-P", "-D", "-O"):
        i += 2 if literal(call.args[i]) in _FIND_VALUES else 1
    starts = []
    for word in call.args[i:]:
        value = literal(word)
        if value is not None and (value.startswith(("-", "(", "!", ")")) or value == "\\("):
            break
        starts.append(word)
    return starts or [text_word(".", call.at)]


def _find(call: Call, report: Report) -> None:
    starts = find_starts(call)
    shown = call.shown()
    deleting = any(literal(w) == "-delete" for w in call.args)
    for inner in find_exec(call, starts):
        if inner.name in _DELETERS:
            deleting = True
        else:
            report.run_call(inner)
    if deleting:
        for word in starts:
            check_target(word, call, report, shown, "deletes files under")


def find_exec(call: Call, starts: list[Word]) -> Iterator[Call]:
    """The commands of `-exec ... ;` / `-exec ... {} +`, with `{}` standing for the start directories."""
    args = call.args
    i = 0
    while i < len(args):
        if literal(args[i]) in ("-exec", "-execdir", "-ok", "-okdir"):
            end = next((k for k in range(i + 1, len(args)) if literal(args[k]) in (";", "+")), len(args))
            words: list[Word] = []
            for word in args[i + 1:end]:
                words += starts if literal(word) == "{}" else [word]
            if words:
                yield unwrap(Call("", words[0], words[1:], [], call.code, cwd=call.cwd, via=call.via + ["find"]))
            i = end
        i += 1


def _rsync(call: Call, report: Report) -> None:
    opts = options(call.args, _RSYNC_VALUES)
    if not _RSYNC_DELETES & opts.long or len(opts.operands) < 2:
        return
    destination = opts.operands[-1]
    value = literal(destination)
    if value is not None and re.match(r"[^/:]*:", value) and not value.startswith("/"):
        path = value.partition(":")[2]
        destination = text_word(path if path.startswith("/") else f"~/{path}", destination.start)
    check_target(destination, call, report, call.shown(), "deletes whatever is not in the source from")


def _git_clean(call: Call, report: Report) -> None:
    args = [literal(w) or "" for w in call.args]
    directory = call.cwd
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] == "-C" and i + 1 < len(args):
            directory = posixpath.join(directory or "", args[i + 1]) if directory else args[i + 1]
        i += 2 if args[i] in _GIT_VALUES else 1
    if i >= len(args) or args[i] != "clean":
        return
    opts = options(call.args[i + 1:])
    forced = "f" in opts.short or "force" in opts.long
    if forced and {"d", "x", "X"} & opts.short and directory and (what := system_path(directory)):
        report.add("PB401", call.at, f"'{call.shown()}' deletes every untracked file and directory of {what}; run "
                                     "git clean inside the repository's own directory")
