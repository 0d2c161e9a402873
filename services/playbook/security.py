"""Security analysis of a playbook (PB4xx): what its shell steps would really run, and what it leaks.

Shell commands are parsed (`shell_analysis`), not searched for substrings. A `${...}` the
analysis cannot see is a value that may be anything, or empty: `rm -rf ${dir}/` with an
empty `dir` is `rm -rf /`. Errors stop a run unless it is started with `allow_unsafe_shell`.
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from services.playbook.credentials import credential_issues, transport_issues
from services.playbook.diagnostics import Diagnostic, Issue, Path
from services.playbook.references import find_references, ReferenceSyntaxError
from services.playbook.shell_analysis import (
    Command, Hole, Script, literal, mark_references, options, parse_argv, parse_shell,
)

Risk = Literal["empty", "set", "safe"]
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "fish"}
_INTERPRETERS = {"perl", "ruby", "node", "nodejs", "php", "pwsh", "lua"}
_FETCHERS = {"curl", "wget", "fetch", "http", "https", "aria2c"}
_SAFE_DEVICES = re.compile(r"/dev/(null|zero|full|u?random|std(in|out|err)|tty\d*|console|kmsg|log|(fd|pts)/\d+"
                           r"|shm/.*)")
_SYSTEM_PARENTS = {"usr", "bin", "sbin", "boot", "lib", "lib32", "lib64", "libx32", "home"}
_MKFS = re.compile(r"mkfs(\..+)?|mke2fs|mkswap|mkdosfs|mkntfs")
_PARTITIONERS = {"fdisk": {"l", "list", "s", "getsz"}, "sfdisk": {"l", "list", "d", "dump", "J", "json", "s", "V",
                 "verify", "g", "show-size", "show-geometry"}, "gdisk": {"l"}, "cfdisk": set(),
                 "sgdisk": {"p", "print", "i", "info", "v", "verify", "P", "pretend"}}
_PARTED_WRITES = {"mklabel", "mktable", "mkpart", "mkpartfs", "rm", "resize", "resizepart", "rescue", "move", "cp",
                  "set", "toggle", "name", "disk_set"}
_OCTAL = re.compile(r"[0-7]{3,4}")
_SYMBOLIC = re.compile(r"([ugoa]*)([-+=])([rwxXst]*)")
_FORK_BOMBS = [re.compile(rf"{head}\s*\{{[^}}]{{0,200}}?(?<![\w-])(?P=f)\s*(\|\s*&?|&)\s*(?P=f)\s*&(?!&)")
               for head in (r"(?<![^\s;&|(){}])(?P<f>[^\s(){}|&;<>'\"]{1,64})\s*\(\s*\)",
                            r"\bfunction\s+(?P<f>[^\s(){}|&;<>'\"]{1,64})(\s*\(\s*\))?")]
_FIX_PATH = ("anchor the path under a fixed directory (e.g. /tmp/work/${dir}), "
             "or for a shell variable write \"${DIR:?}\" so an empty value stops the command")


def security_errors(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """The findings that must stop a run unless it was started with `allow_unsafe_shell`."""
    return [d for d in diagnostics if d.code.startswith("PB4") and d.severity == "error"]


def security_issues(data: dict[Any, Any]) -> list[Issue]:
    """Every PB4xx issue of a playbook's raw data: shell steps, http steps, and every text value."""
    known, risks = _known_values(data)
    issues = list(credential_issues(data))
    for at, action in _actions(data):
        args = action.get("args") if isinstance(action, dict) else None
        if isinstance(args, dict) and action.get("action") == "shell":
            issues += _shell_step(args, at + ("args",), known, risks)
        elif isinstance(args, dict) and action.get("action") == "http_request":
            issues += transport_issues(args, at + ("args",))
    return issues


def _actions(data: dict[Any, Any]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every action the playbook may run: steps, their rollbacks, error handlers' remediations."""
    steps = data.get("steps")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            continue
        yield ("steps", i), step
        rollback = step.get("rollback")
        for k, undo in enumerate(rollback if isinstance(rollback, list) else []):
            yield ("steps", i, "rollback", k), undo
    handlers = data.get("error_handlers")
    for k, handler in enumerate(handlers if isinstance(handlers, list) else []):
        if isinstance(handler, dict):
            yield ("error_handlers", k, "run"), handler.get("run")


def _known_values(data: dict[Any, Any]) -> tuple[dict[str, str], dict[str, Risk]]:
    """Text variables are inlined into commands; every other name gets how risky its value is."""
    known: dict[str, str] = {}
    risks: dict[str, Risk] = {}
    variables = data.get("variables")
    for name, value in (variables if isinstance(variables, dict) else {}).items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            known[str(name)] = str(value)
        else:
            risks[str(name)] = "empty" if value is None else "set"
    parameters = data.get("parameters")
    for parameter in parameters if isinstance(parameters, list) else []:
        if isinstance(parameter, dict) and isinstance(parameter.get("name"), str):
            fixed = parameter.get("required") is True or parameter.get("default") not in (None, "")
            risks[parameter["name"]] = "set" if fixed else "empty"
    return known, risks


def _shell_step(args: dict[Any, Any], at: Path, known: dict[str, str], risks: dict[str, Risk]) -> list[Issue]:
    command, argv = args.get("command"), args.get("argv")
    if isinstance(command, str):
        text, refs = mark_references(command, known)
        found = list(_raw_references(command))
        found += _fork_bomb(command)
        found += _script_issues(parse_shell(text, refs), risks)
        path = at + ("command",)
    elif isinstance(argv, list) and argv and all(isinstance(item, str) for item in argv):
        found = [finding for item in argv for finding in _fork_bomb(item)]
        found += _script_issues(parse_argv(argv, known), risks)
        path = at + ("argv",)
    else:
        return []
    unique = dict.fromkeys(found)  # the same finding twice in one command is said once
    return [Issue(code, message, path) for code, message in unique]


def _raw_references(command: str) -> Iterator[tuple[str, str]]:
    try:
        refs = find_references(command)
    except ReferenceSyntaxError:
        return
    for ref in refs:
        if ref.raw[2:].lstrip().startswith("raw:"):
            yield "PB411", (f"{ref.raw} inserts its value into the shell command unquoted, so spaces, quotes or ';' "
                            f"in it become shell syntax; use ${{{ref.name}}} (quoted) unless the value must be shell "
                            "code, and then make sure it comes from a trusted source")


def _fork_bomb(text: str) -> list[tuple[str, str]]:
    for pattern in _FORK_BOMBS:
        if m := pattern.search(text):
            return [("PB409", f"fork bomb: function '{m['f']}' starts two copies of itself in the background, which "
                              "multiplies processes until the host stops responding; remove it")]
    return []


def _script_issues(script: Script, risks: dict[str, Risk]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for command in script.commands:
        found += _command_issues(command, script, risks)
    found += _piped_downloads(script)
    for _, sub in script.subs:
        found += _script_issues(sub, risks)
    return found


def _command_issues(command: Command, script: Script, risks: dict[str, Risk]) -> Iterator[tuple[str, str]]:
    shown = " ".join([command.program] + [script.show(word) for word in command.args])
    for operator, target in command.redirects:
        if operator not in ("<", "<<", "<<<", "<&") and _device(target):
            yield "PB405", (f"'{operator} {literal(target)}' writes straight onto a device, destroying the disk's "
                            "data and filesystem; write to a file instead")
    program = command.program
    if program == "rm":
        yield from _rm(command, script, risks, shown)
    elif program in ("chmod", "chown", "chgrp"):
        yield from _permissions(command, shown)
    elif program == "dd" or _MKFS.fullmatch(program) or program in _PARTITIONERS or program in (
            "parted", "wipefs", "shred", "tee"):
        yield from _disk(command, script, shown)
    elif program in _SHELLS or program in ("eval", "source", ".") or _interprets(program):
        yield from _interpreter(command, script, risks, shown)


def _rm(command: Command, script: Script, risks: dict[str, Risk], shown: str) -> Iterator[tuple[str, str]]:
    opts = options(command.args)
    if "no-preserve-root" in opts.long:
        yield "PB401", (f"'{shown}' uses --no-preserve-root, which lets rm delete the whole filesystem; remove the "
                        "flag and name the directory to delete")
    if not ({"r", "R"} & opts.short or "recursive" in opts.long):
        return
    for word in opts.operands:
        holes = script.holes(word)
        first = holes[0] if holes and holes[0].start == 0 else None
        risk = _risk(first, risks) if first and not _special(first) else None
        if risk == "empty":
            empty = _fill(word, script, risks, empty=True)
            when_empty = f" (when it is empty, this deletes {empty})" if empty else ""
            yield "PB402", (f"'{shown}' deletes a path that starts with {script.show(word[:first.end])}, a value that "
                            f"may be empty or anything{when_empty}; {_FIX_PATH}")
        elif risk == "set":
            yield "PB403", (f"'{shown}' deletes a path that starts with {script.show(word[:first.end])}, which a "
                            f"caller can set to anything (including /); {_FIX_PATH}")
        elif risk is None and (what := _system(_fill(word, script, risks, empty=False))):
            yield "PB401", f"'{shown}' recursively deletes {what}; delete the specific directory you mean instead"
        elif risk is None and (what := _system(_fill(word, script, risks, empty=True))):
            yield "PB402", (f"'{shown}' recursively deletes {what} when a value in "
                            f"{script.show(word)} is empty; {_FIX_PATH}")


def _special(hole: Hole) -> bool:
    return hole.kind == "var" and hole.var in ("HOME", "PWD") and not hole.modifier


def _risk(hole: Hole, risks: dict[str, Risk]) -> Risk:
    """How much is known about a value: may be empty, set (but to anything), or guarded."""
    if hole.kind == "var":
        guarded = hole.modifier.startswith(":?") or re.match(r":?[-=]\S", hole.modifier)
        return "safe" if guarded else "empty"
    if hole.kind == "ref" and hole.ref is not None and hole.ref.kind == "name":
        return risks.get(hole.ref.name.split(".")[0], "empty")
    return "empty"


def _fill(word: str, script: Script, risks: dict[str, Risk], *, empty: bool) -> str:
    """The path a word names when every value that may be empty is (or none is) empty."""
    pieces, position = [], 0
    for hole in script.holes(word):
        pieces.append(literal(word[position:hole.start]))
        if _special(hole):
            pieces.append("~" if hole.var == "HOME" else ".")
        else:
            pieces.append("" if empty and _risk(hole, risks) == "empty" else "value")
        position = hole.end
    pieces.append(literal(word[position:]))
    return "".join(pieces)


def _system(path: str) -> str | None:
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
    if len(parts) == 2 and parts[0] in _SYSTEM_PARENTS:
        return f"the system directory /{'/'.join(parts)}"
    return None


def _device(word: str) -> bool:
    path = literal(word)
    return path.startswith("/dev/") and not _SAFE_DEVICES.fullmatch(path)


def _permissions(command: Command, shown: str) -> Iterator[tuple[str, str]]:
    args = [literal(word) for word in command.args]
    recursive = any(a == "--recursive" or (a.startswith("-") and not a.startswith("--") and "R" in a) for a in args)
    if command.program == "chmod":
        modes = [a for a in args if _OCTAL.fullmatch(a) or all(_SYMBOLIC.fullmatch(c) for c in a.split(","))]
        mode = modes[0] if modes and "--reference" not in " ".join(args) else ""
        targets = [a for a in args if a != mode and not a.startswith("-")]
    else:
        mode, targets = "", [literal(word) for word in options(command.args).operands[1:]]
    worst = next((what for target in targets if (what := _system(target)) and "working" not in what), None)
    if command.program == "chmod" and _world_writable(mode):
        if worst:
            yield "PB406", (f"'{shown}' makes {worst} writable by every user, so any local process can replace "
                            "system files; give the exact files the permissions they need (e.g. 755/644)")
        else:
            yield "PB407", (f"'{shown}' makes files writable by every user (mode {mode}); grant write access to the "
                            "owner or a group instead (e.g. 775/664 with chgrp)")
    elif recursive and worst and (command.program != "chmod" or worst.endswith("(/)")):
        yield "PB406", (f"'{shown}' recursively changes the ownership or permissions of {worst}, which breaks "
                        "sudo, ssh and services that check them; change only the directory you mean")


def _world_writable(mode: str) -> bool:
    if _OCTAL.fullmatch(mode):
        return bool(int(mode, 8) & 0o002)
    return any((m := _SYMBOLIC.fullmatch(clause)) and ({"a", "o"} & set(m[1])) and m[2] in "+=" and "w" in m[3]
               for clause in mode.split(",") if mode)


def _disk(command: Command, script: Script, shown: str) -> Iterator[tuple[str, str]]:
    program, opts = command.program, options(command.args)
    devices = [literal(word) for word in opts.operands if _device(word)]
    unseen = any(script.holes(word) and script.holes(word)[0].start == 0 for word in opts.operands)
    flags = opts.short | opts.long
    why = f"'{shown}' overwrites a disk or partition, destroying its data; "
    if program == "dd" and any(_device(word[3:]) for word in command.args if literal(word).startswith("of=")):
        yield "PB404", why + "write to an image file, or do this by hand, not from a playbook"
    elif (_MKFS.fullmatch(program) or (program == "wipefs" and {"a", "all", "o", "offset"} & flags)) and (
            devices or unseen):
        yield "PB404", why + "format disks by hand or with a provisioning tool, not from a playbook"
    elif program in _PARTITIONERS and devices and not flags & _PARTITIONERS[program]:
        yield "PB404", why + "use the read-only form (e.g. -l) in a playbook, and repartition by hand"
    elif program == "parted" and _PARTED_WRITES & {literal(word) for word in opts.operands}:
        yield "PB404", why + "use 'parted DEVICE print' in a playbook, and repartition by hand"
    elif program in ("shred", "tee") and devices:
        yield "PB404" if program == "shred" else "PB405", why + "name a file, not a device"


def _interpreter(command: Command, script: Script, risks: dict[str, Risk], shown: str) -> Iterator[tuple[str, str]]:
    """`eval` and `sh -c` run a string as code: look inside it, and at where it comes from."""
    opts = options(command.args)
    if command.program == "eval":
        code = command.args
    elif command.program in _SHELLS and "c" in opts.short:
        code = opts.operands[:1]
    else:
        code = []
    if any(hole.kind == "ref" for word in code for hole in script.holes(word)):
        yield "PB412", (f"'{shown}' evaluates a string holding a ${{...}} value a second time, so quoting no longer "
                        "protects it and a value with quotes or ';' runs as code; pass the value as an argument "
                        "(sh -c '... \"$1\"' sh ${value}) or as an environment variable")
    for word in command.args:
        if any(_fetches(sub) for _, sub in script.sub(word)):
            yield "PB410", _download_message(shown)
    if code:
        yield from _script_issues(parse_shell(" ".join(literal(word) for word in code), script.refs, 1), risks)


def _piped_downloads(script: Script) -> Iterator[tuple[str, str]]:
    """`curl ... | sh`: a later stage of the same pipeline runs what an earlier one downloaded."""
    fetcher: dict[int, str] = {}
    for command in script.commands:
        if command.program in _FETCHERS:
            fetcher[command.pipeline] = command.program
        elif command.pipeline in fetcher and _reads_code_from_stdin(command):
            yield "PB410", _download_message(f"{fetcher[command.pipeline]} ... | {command.program}")


def _reads_code_from_stdin(command: Command) -> bool:
    opts = options(command.args)
    if command.program in ("source", "."):
        return [literal(word) for word in opts.operands[:1]] in ([], ["/dev/stdin"], ["-"])
    if command.program in _SHELLS:
        return "c" not in opts.short and ("s" in opts.short or not opts.operands or literal(opts.operands[0]) == "-")
    if _interprets(command.program):
        return not {"c", "e", "E", "m", "r"} & opts.short and (not opts.operands or literal(opts.operands[0]) == "-")
    return False


def _interprets(program: str) -> bool:
    return program in _INTERPRETERS or bool(re.fullmatch(r"python[\d.]*", program))


def _fetches(script: Script) -> bool:
    return any(command.program in _FETCHERS for command in script.commands) or any(
        _fetches(sub) for _, sub in script.subs)


def _download_message(shown: str) -> str:
    return (f"'{shown}' runs code downloaded at run time without checking it, so whoever controls the URL (or the "
            "network) controls the host; download to a file, verify its checksum or signature, then run it")
