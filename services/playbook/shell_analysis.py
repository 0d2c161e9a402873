"""A shell command as the security checks see it: every program that would run, wrappers taken off.

The engine's `${...}` references become marks the parser keeps as opaque parts; text
variables are inlined, quoted as the engine quotes them. Walking the syntax tree gives one
`Call` per simple command, in substitutions too, with `sudo`, `env`, `xargs`, `busybox`,
`timeout`... removed so `name` is what really runs; `ssh host CODE`, `su -c`, `watch`,
`env -S` and `docker|kubectl exec ... sh -c` become the `sh -c CODE` they amount to.
"""
from __future__ import annotations

import bisect
import posixpath
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from services.playbook.references import Reference, ReferenceSyntaxError, find_references
from services.playbook.shell_syntax import (
    REF_CLOSE, REF_OPEN, Compound, Heredoc, Part, Redirect, Sequence, Simple, Word,
)

MAX_DEPTH = 8  # strings run as code (sh -c '...') analysed inside one another; deeper ones count as unseen
_VALUE = frozenset  # options of a wrapper that take a value
# wrapper -> (its options that take a value, positional words before the wrapped command)
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "sudo": (_VALUE("-u -g -C -D -h -p -r -t -U -T --user --group --chdir --host --prompt --role --type "
                    "--other-user --close-from --command-timeout".split()), 0),
    "doas": (_VALUE({"-u", "-C"}), 0), "pkexec": (_VALUE({"--user"}), 0),
    "env": (_VALUE({"-u", "-C", "--unset", "--chdir", "-S", "--split-string"}), 0),
    "nohup": (_VALUE(), 0), "exec": (_VALUE({"-a"}), 0), "builtin": (_VALUE(), 0), "command": (_VALUE(), 0),
    "time": (_VALUE({"-f", "-o", "--format", "--output"}), 0), "setsid": (_VALUE(), 0),
    "nice": (_VALUE({"-n", "--adjustment"}), 0), "ionice": (_VALUE({"-c", "-n", "-p", "--class", "--classdata"}), 0),
    "timeout": (_VALUE({"-s", "-k", "--signal", "--kill-after"}), 1),
    "stdbuf": (_VALUE({"-i", "-o", "-e"}), 0), "unbuffer": (_VALUE(), 0),
    "chroot": (_VALUE({"--userspec", "--groups"}), 1), "taskset": (_VALUE(), 1), "chrt": (_VALUE(), 1),
    "nsenter": (_VALUE("-t -S -G -m -u -i -n -p -U -C -r -w --target --setuid --setgid".split()), 0),
    "unshare": (_VALUE({"--map-user", "--map-group", "--propagation", "--setgroups"}), 0),
    "runuser": (_VALUE({"-u", "-g", "-G", "--user", "--group", "--supp-group"}), 0),
    "cgexec": (_VALUE({"-g"}), 0), "faketime": (_VALUE({"-f"}), 1), "catchsegv": (_VALUE(), 0),
    "strace": (_VALUE("-o -e -p -s -u -E -P -I -a -b -O -S -X".split()), 0), "ltrace": (_VALUE({"-o", "-e", "-p"}), 0),
    "busybox": (_VALUE(), 0), "toybox": (_VALUE(), 0), "proxychains": (_VALUE({"-f"}), 0), "torsocks": (_VALUE(), 0),
    "systemd-run": (_VALUE("-p -u -E -M --property --unit --description --slice --uid --gid --setenv --machine "
                           "--working-directory --on-calendar --on-active".split()), 0),
    "xargs": (_VALUE("-I -d -E -L -n -P -s -a --delimiter --max-args --max-procs --max-lines --arg-file "
                     "--replace --eof --max-chars --process-slot-var".split()), 0),
}
_SSH_VALUES = _VALUE("-b -c -D -E -e -F -I -i -J -L -l -m -O -o -p -Q -R -S -W -w -B -P".split())
_CONTAINER_VALUES = _VALUE(
    "-e --env --env-file -u --user -w --workdir --detach-keys -v --volume -p --publish --name --network --net "
    "--entrypoint -m --memory --cpus -h --hostname -l --label --mount --restart --log-driver --log-opt --add-host "
    "--dns --device --cap-add --cap-drop --security-opt --ulimit --pid --ipc --platform --pull --tmpfs --gpus "
    "--shm-size --stop-signal --label-file --group-add -c --container -n --namespace --pod-running-timeout "
    "--cpu-shares --userns --uts --cgroupns --runtime --expose --link --volumes-from -a --attach".split())
_SU_VALUES = _VALUE({"-c", "--command", "-s", "--shell", "-g", "--group", "-G", "--supp-group", "-w"})
_WATCH_VALUES = _VALUE({"-n", "--interval", "-q", "--equexit"})
_FLOCK_VALUES = _VALUE({"-w", "--timeout", "-E", "--conflict-exit-code"})


class Reach(NamedTuple):
    """How an offset in the marked text maps back to the text as written."""

    marked: int
    written: int
    exact: bool  # False inside an inlined variable or a reference: every offset maps to its start


def mark_references(text: str, variables: Mapping[str, str]) -> tuple[str, list[Reference], list[Reach]]:
    """References become marks, variables are inlined as the engine quotes them; plus the way back."""
    refs: list[Reference] = []
    out: list[str] = []
    reach: list[Reach] = []
    _mark(text, variables, refs, out, reach, written=0, quote=False, depth=0, exact=True)
    return "".join(out), refs, reach


def _mark(text: str, variables: Mapping[str, str], refs: list[Reference], out: list[str], reach: list[Reach], *,
          written: int, quote: bool, depth: int, exact: bool) -> None:
    try:
        found = find_references(text)
    except ReferenceSyntaxError:
        found = []
    position = 0
    for ref in found:
        _plain(text[position:ref.start], written + position, out, reach, quote, exact)
        raw = ref.raw[2:].lstrip().startswith("raw:")
        where = written + ref.start if exact else written
        if ref.kind == "name" and ref.name in variables and depth < MAX_DEPTH:
            reach.append(Reach(_length(out), where, False))
            _mark(variables[ref.name], variables, refs, out, reach, written=where, quote=quote or not raw,
                  depth=depth + 1, exact=False)
        else:
            reach.append(Reach(_length(out), where, False))
            out.append(f"{REF_OPEN}{len(refs)}{REF_CLOSE}")
            refs.append(ref)
        position = ref.end
    _plain(text[position:], written + position, out, reach, quote, exact)


def _plain(text: str, written: int, out: list[str], reach: list[Reach], quote: bool, exact: bool) -> None:
    if not text:
        return
    if quote:
        reach.append(Reach(_length(out), written, False))
        out.append(shlex.quote(text.replace("$${", "${")))
        return
    for k, piece in enumerate(text.split("$${")):
        reach.append(Reach(_length(out), written, exact))
        out.append(("${" if k else "") + piece)
        written += len(piece) + 3


def _length(out: list[str]) -> int:
    return sum(map(len, out))


def written_offset(reach: list[Reach], marked: int) -> int:
    """The offset in the text as written of `marked`, an offset in the marked text."""
    k = bisect.bisect_right([r.marked for r in reach], marked) - 1
    if k < 0:
        return marked
    anchor = reach[k]
    return anchor.written + (marked - anchor.marked if anchor.exact else 0)


@dataclass(slots=True)
class Code:
    """A piece of shell text being analysed: the step's command, or a string it runs as code."""

    text: str
    refs: list[Reference]
    place: Callable[[int], int]  # an offset in `text` -> an offset in the step's command (marked)
    depth: int = 0

    def show(self, *words: Word | None) -> str:
        """Words as the user wrote them (references included), short enough for a message."""
        present = [w for w in words if w is not None]
        if not present:
            return ""
        shown = " ".join(self.text[w.start:w.end] for w in present)
        for k, ref in enumerate(self.refs):
            shown = shown.replace(f"{REF_OPEN}{k}{REF_CLOSE}", ref.raw)
        shown = " ".join(shown.split())
        return shown if len(shown) <= 80 else shown[:77] + "..."

    def inner(self, word: Word, text: str) -> Code:
        """The code a word holds (`sh -c 'CODE'`): exact offsets when the word is written as one literal."""
        written = self.text[word.start:word.end]
        if written in (text, f"'{text}'", f'"{text}"'):
            shift = word.start + (0 if written == text else 1)
            return Code(text, self.refs, lambda at: self.place(shift + at), self.depth + 1)
        return Code(text, self.refs, lambda at: self.place(word.start), self.depth + 1)


@dataclass(slots=True)
class Call:
    """One program run: what it is, its words, and where its input comes from."""

    name: str  # basename of the program (`/bin/rm` -> `rm`); "" when run time decides it
    word: Word | None  # the command word; None for redirections alone
    args: list[Word]
    redirects: list[Redirect]
    code: Code
    feeds: list[Call | Heredoc | Word | None] = field(default_factory=list)  # stdin: nearest producer first
    cwd: str | None = None  # set by an earlier `cd DIR` in the same list
    via: list[str] = field(default_factory=list)  # the wrappers it runs under, outermost first
    xargs: str | None = None  # run by xargs: operands also come from stdin ("" or the -I replace string)

    @property
    def at(self) -> int:
        return self.code.place(self.word.start if self.word else 0)

    def shown(self) -> str:
        return self.code.show(self.word, *self.args)


def literal(word: Word) -> str | None:
    """The word's value when it is written out in full, else None."""
    return word.value if word.static else None


def leading_hole(word: Word) -> Part | None:
    """The value a word starts with, when run time decides it (`${dir}/x`, `"$HOME"/x`)."""
    for part in word.parts:
        if part.kind != "text":
            return part
        if part.text:
            return None
    return None


def basename(word: Word) -> str:
    value = literal(word)
    return posixpath.basename(value) if value else ""


def synthetic(words: list[Word]) -> Word:
    """Several words run as one string (`ssh host a b` runs `a b`)."""
    parts: list[Part] = []
    for k, word in enumerate(words):
        if k:
            parts.append(Part("text", " ", True, word.start))
        parts += word.parts
    return Word(words[0].start, words[-1].end, parts)


def text_word(value: str, at: int) -> Word:
    return Word(at, at, [Part("text", value, True, at)])


def calls(sequence: Sequence, code: Code, cwd: str | None = None) -> Iterator[Call]:
    """Every program the sequence runs, substitutions and compound bodies included, in order."""
    for pipeline in sequence.pipelines:
        producers: list[Call | None] = []
        for command in pipeline.commands:
            if isinstance(command, Simple):
                for word in command.assigns + command.words:
                    if not word.static:
                        yield from _substituted(word.parts, code, cwd)
                yield from _redirect_substitutions(command.redirects, code, cwd)
                call = make_call(command, code, cwd, producers)
                if call is not None:
                    yield call
                    cwd = _changed_directory(call, cwd, len(pipeline.commands))
                producers.append(call)
            else:
                yield from _compound(command, code, cwd)
                producers.append(None)


def _compound(command: Compound, code: Code, cwd: str | None) -> Iterator[Call]:
    for word in command.words:
        if not word.static:
            yield from _substituted(word.parts, code, cwd)
    yield from _redirect_substitutions(command.redirects, code, cwd)
    if command.redirects:
        yield Call("", None, [], command.redirects, code, cwd=cwd)
    for body in command.bodies:
        yield from calls(body, code, cwd)


def _redirect_substitutions(redirects: list[Redirect], code: Code, cwd: str | None) -> Iterator[Call]:
    for redirect in redirects:
        if redirect.target is not None:
            yield from _substituted(redirect.target.parts, code, cwd)
        if redirect.heredoc is not None:
            yield from _substituted(redirect.heredoc.parts, code, cwd)


def _substituted(parts: list[Part] | tuple[Part, ...], code: Code, cwd: str | None) -> Iterator[Call]:
    for part in parts:
        if part.body is not None:
            yield from calls(part.body, code, cwd)
        if part.inner:
            yield from _substituted(part.inner, code, cwd)


def _changed_directory(call: Call, cwd: str | None, stages: int) -> str | None:
    if call.name != "cd" or stages > 1:
        return cwd
    target = next((literal(w) for w in call.args if literal(w) != "--"), "~")
    if target is None:
        return None
    return posixpath.normpath(posixpath.join(cwd or "", target)) if cwd or target.startswith(("/", "~")) else None


def make_call(command: Simple, code: Code, cwd: str | None, producers: list[Call | None]) -> Call | None:
    feeds = _feeds(command.redirects, producers)
    if not command.words:
        return Call("", None, [], command.redirects, code, feeds, cwd) if command.redirects else None
    call = Call("", command.words[0], command.words[1:], command.redirects, code, feeds, cwd)
    return unwrap(call)


def _feeds(redirects: list[Redirect], producers: list[Call | None]) -> list[Call | Heredoc | Word | None]:
    for redirect in reversed(redirects):
        if redirect.heredoc is not None and redirect.fd in ("", "0"):
            return [redirect.heredoc]
        if redirect.op == "<<<" and redirect.target is not None:
            return [redirect.target]
        if redirect.op == "<" and redirect.fd in ("", "0"):
            process = redirect.target is not None and any(p.kind == "process" for p in redirect.target.parts)
            return [redirect.target] if process and redirect.target else []
    return list(reversed(producers))


def unwrap(call: Call) -> Call:
    """Take wrappers off until the program that really runs is the command word."""
    words = [call.word] + call.args if call.word else []
    i = 0
    while i < len(words):
        name = basename(words[i])
        special = _SPECIAL_WRAPPERS.get(name)
        if special is not None and (inner := special(call, words, i)) is not None:
            return inner
        if name in _WRAPPERS and not (name == "command" and _value(words, i + 1) in ("-v", "-V")):
            options, positional = _WRAPPERS[name]
            start = i + 1
            i = skip_options(words, start, options)
            call.via.append(name)
            if name == "env":
                if (split := _split_string(words[start:i])) is not None:
                    return _as_shell(call, words[start - 1], split)
                while i < len(words) and "=" in (literal(words[i]) or "") and not literal(words[i]).startswith("="):
                    i += 1
            if name == "xargs":
                replace = next((_value(words, k + 1) for k in range(start, i) if _value(words, k) in (
                    "-I", "--replace")), None)
                call.xargs = replace or "{}" if replace is not None else ""
            i += positional
            continue
        break
    if i >= len(words):
        call.word, call.args = None, []
        return call
    call.word, call.args = words[i], words[i + 1:]
    call.name = posixpath.basename(literal(words[i]) or "") if words[i].static else _which(words[i])
    if call.name and not words[i].static:
        call.via.append("which")
    return call


def _which(word: Word) -> str:
    """`$(which python3)`, `$(command -v kubectl)`: the program is named, only its directory is looked up."""
    if len(word.parts) > 2 or any(p.kind not in ("text", "command") or (p.kind == "text" and p.text)
                                  for p in word.parts):
        return ""
    bodies = [p.body for p in word.parts if p.kind == "command"]
    if len(bodies) != 1 or bodies[0] is None or len(bodies[0].pipelines) != 1:
        return ""
    commands = bodies[0].pipelines[0].commands
    words = commands[0].words if len(commands) == 1 and isinstance(commands[0], Simple) else []
    values = [literal(w) for w in words]
    if values[:1] == ["which"] or values[:2] in (["command", "-v"], ["type", "-P"]):
        name = values[-1] if len(values) in (2, 3) else None
        return posixpath.basename(name) if name and not name.startswith("-") else ""
    return ""


def _value(words: list[Word], i: int) -> str | None:
    return literal(words[i]) if i < len(words) else None


def skip_options(words: list[Word], i: int, with_value: frozenset[str]) -> int:
    """Index of the first word after the options starting at `i`."""
    while i < len(words):
        word = literal(words[i])
        if word == "--":
            return i + 1
        if word is None or not word.startswith("-") or word == "-":
            return i
        if word.startswith("--"):
            i += 2 if word in with_value else 1
            continue
        takes = next((k for k, c in enumerate(word[1:], 1) if f"-{c}" in with_value), None)
        i += 2 if takes == len(word) - 1 else 1
    return i


def _split_string(options: list[Word]) -> Word | None:
    """`env -S 'STRING'`: the string env splits into a command."""
    for k, word in enumerate(options):
        value = literal(word) or ""
        if value in ("-S", "--split-string") and k + 1 < len(options):
            return options[k + 1]
        if value.startswith("--split-string="):
            return text_word(value.partition("=")[2], word.start)
        if value.startswith("-S") and not value.startswith("--"):
            return text_word(value[2:], word.start)
    return None


def _as_shell(call: Call, wrapper: Word, code: Word) -> Call:
    """A wrapper that hands a string to a shell is analysed as `sh -c STRING`, shown as written."""
    call.via.append(basename(wrapper))
    call.name, call.word, call.args = "sh", wrapper, [text_word("-c", code.start), code]
    return call


def _ssh(call: Call, words: list[Word], i: int) -> Call | None:
    start = skip_options(words, i + 1, _SSH_VALUES)
    rest = words[start + 1:]
    return _as_shell(call, words[i], synthetic(rest)) if rest else None


def _su(call: Call, words: list[Word], i: int) -> Call | None:
    for k in range(i + 1, len(words) - 1):
        if _value(words, k) in ("-c", "--command"):
            return _as_shell(call, words[i], words[k + 1])
    return None


def _watch(call: Call, words: list[Word], i: int) -> Call | None:
    start = skip_options(words, i + 1, _WATCH_VALUES)
    if any(_value(words, k) in ("-x", "--exec") for k in range(i + 1, start)) or start >= len(words):
        return _rest(call, words, start, "watch")
    return _as_shell(call, words[i], synthetic(words[start:]))


def _flock(call: Call, words: list[Word], i: int) -> Call | None:
    for k in range(i + 1, len(words) - 1):
        if _value(words, k) in ("-c", "--command"):
            return _as_shell(call, words[i], words[k + 1])
    start = skip_options(words, i + 1, _FLOCK_VALUES)
    return _rest(call, words, start + 1, "flock")


def _script(call: Call, words: list[Word], i: int) -> Call | None:
    for k in range(i + 1, len(words) - 1):
        if _value(words, k) in ("-c", "--command"):
            return _as_shell(call, words[i], words[k + 1])
    return None


def _container(call: Call, words: list[Word], i: int) -> Call | None:
    """`docker exec C cmd`, `docker run IMAGE cmd`, `docker compose exec S cmd`, `kubectl exec P -- cmd`."""
    k = i + 1
    if _value(words, k) == "compose" or basename(words[i]) == "docker-compose":
        k += 0 if basename(words[i]) == "docker-compose" else 1
    if _value(words, k) not in ("exec", "run"):
        return None
    tool = f"{basename(words[i])} {_value(words, k)}"
    if basename(words[i]) in ("kubectl", "oc"):
        dashes = next((j for j in range(k + 1, len(words)) if _value(words, j) == "--"), None)
        if dashes is not None:
            return _rest(call, words, dashes + 1, tool)
    start = skip_options(words, k + 1, _CONTAINER_VALUES)
    entrypoint = next((words[j + 1] for j in range(k + 1, min(start, len(words) - 1))
                       if _value(words, j) == "--entrypoint"), None)
    if entrypoint is not None:  # `docker run --entrypoint sh IMAGE -c CODE` runs `sh -c CODE`
        call.via.append(tool)
        call.word, call.args = entrypoint, words[start + 1:]
        return unwrap(call)
    return _rest(call, words, start + 1, tool)


def _rest(call: Call, words: list[Word], start: int, wrapper: str) -> Call | None:
    if start >= len(words):
        return None
    call.via.append(wrapper)
    call.word, call.args = words[start], words[start + 1:]
    return unwrap(call)


_SPECIAL_WRAPPERS: dict[str, Callable[[Call, list[Word], int], Call | None]] = {
    "ssh": _ssh, "su": _su, "runuser": _su, "watch": _watch, "flock": _flock, "script": _script,
    "docker": _container, "podman": _container, "nerdctl": _container, "docker-compose": _container,
    "kubectl": _container, "oc": _container,
}


class Options(NamedTuple):
    short: set[str]
    long: set[str]
    operands: list[Word]


def options(args: list[Word], with_value: frozenset[str] = frozenset()) -> Options:
    """Flags and operands: `-rf`, `-r -f`, `--recursive --force`, `--` ending the options."""
    short: set[str] = set()
    long: set[str] = set()
    operands: list[Word] = []
    i = 0
    while i < len(args):
        word = literal(args[i]) or ""
        if word == "--":
            operands += args[i + 1:]
            break
        if word.startswith("--"):
            long.add(word[2:].split("=", 1)[0])
            i += 2 if word in with_value else 1
        elif word.startswith("-") and len(word) > 1:
            short.update(word[1:])
            takes = next((k for k, c in enumerate(word[1:], 1) if f"-{c}" in with_value), None)
            i += 2 if takes == len(word) - 1 else 1
        else:
            operands.append(args[i])
            i += 1
    return Options(short, long, operands)


def top_code(text: str, refs: list[Reference]) -> Code:
    return Code(text, refs, lambda at: at)


def argv_call(argv: list[str], variables: Mapping[str, str]) -> tuple[Call | None, Code]:
    """A program and its arguments run without a shell: every item is exactly one word."""
    refs: list[Reference] = []
    words: list[Word] = []
    text = ""
    for item in argv:
        out: list[str] = []
        _mark(item, variables, refs, out, [], written=0, quote=False, depth=0, exact=True)
        marked = "".join(out)
        start = len(text) + (1 if text else 0)
        text += (" " if text else "") + marked
        words.append(_argv_word(marked, start))
    code = Code(text, refs, lambda at: 0)
    if not words:
        return None, code
    return unwrap(Call("", words[0], words[1:], [], code)), code


def _argv_word(marked: str, start: int) -> Word:
    parts: list[Part] = []
    position = 0
    while (opening := marked.find(REF_OPEN, position)) != -1:
        closing = marked.find(REF_CLOSE, opening)
        if closing == -1:
            break
        if marked[position:opening]:
            parts.append(Part("text", marked[position:opening], True, start + position))
        parts.append(Part("ref", marked[opening + 1:closing], True, start + opening))
        position = closing + 1
    if marked[position:] or not parts:
        parts.append(Part("text", marked[position:], True, start + position))
    return Word(start, start + len(marked), parts)


Risk = Literal["empty", "set", "safe"]


@dataclass(slots=True)
class Report:
    """What the checks found in one step's command, and how they reach one another."""

    risks: Mapping[str, Risk]  # parameters and variables: may be empty, set (to anything), or safe
    run_code: Callable[[Code], None]  # analyse a string that runs as shell code
    run_call: Callable[[Call], None]  # analyse one more program run (`find -exec`'s command)
    found: dict[tuple[str, str], int] = field(default_factory=dict)  # (code, message) -> offset, first wins

    def add(self, code: str, at: int, message: str) -> None:
        self.found.setdefault((code, message), at)
