"""A shell command as the security checks see it: simple commands, their words and redirections.

A quote-aware pre-pass turns `${...}` references and `$(...)`, backtick and `<(...)`
substitutions into opaque placeholders, drops comments and here-document bodies, and
protects quoted operator characters; `shlex` then splits words and operators. So
`echo "rm -rf /"` is one `echo` with one argument, never an `rm`.
"""
from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from services.playbook.references import Reference, ReferenceSyntaxError, find_references

REF_OPEN, REF_CLOSE, SUB_OPEN, SUB_CLOSE, ARITHMETIC = "\ue000", "\ue001", "\ue002", "\ue003", "\ue004"
_OPERATOR_CHARS = "();<>|&\n"
_PROTECTED = {c: chr(0xE010 + k) for k, c in enumerate(";|&()<>\n#`$~")}
_UNPROTECT_ALL = str.maketrans({v: k for k, v in _PROTECTED.items()})
_UNPROTECT_SYNTAX = str.maketrans({v: k for k, v in _PROTECTED.items() if k not in "$~"})  # `$`, `~` stay literal
_OPERATORS = sorted(["&&", "||", ";;", "|&", ";", "|", "&", "(", ")", "\n", "<<<", "<<", "<>", ">>", ">|", "&>>",
                     "&>", ">&", "<&", "<", ">"], key=len, reverse=True)
_REDIRECTS = {"<<<", "<<", "<>", ">>", ">|", "&>>", "&>", ">&", "<&", "<", ">"}
_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}"}
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_HEREDOC = re.compile(r"<<(-?)[ \t]*(['\"]?)([^\s;|&()<>'\"]+)\2")
_MAX_DEPTH = 8  # nested substitutions and `sh -c` strings analysed; deeper ones are left alone
# wrapper -> (its options that take a value, positional words before the wrapped command)
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "sudo": (frozenset("-u -g -C -D -h -p -r -t -U -T --user --group --chdir --host --prompt --role --type "
                       "--other-user --close-from --command-timeout".split()), 0),
    "doas": (frozenset({"-u", "-C"}), 0),
    "env": (frozenset({"-u", "-C", "--unset", "--chdir"}), 0),
    "nohup": (frozenset(), 0), "exec": (frozenset({"-a"}), 0), "builtin": (frozenset(), 0),
    "time": (frozenset({"-f", "-o", "--format", "--output"}), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0), "ionice": (frozenset({"-c", "-n", "-p"}), 0),
    "timeout": (frozenset({"-s", "-k", "--signal", "--kill-after"}), 1),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "command": (frozenset(), 0),
    "xargs": (frozenset("-I -d -E -L -n -P -s -a --delimiter --max-args --max-procs --max-lines --arg-file "
                        "--replace --eof --max-chars --process-slot-var".split()), 0),
}
_HOLE = re.compile(rf"{REF_OPEN}(?P<ref>\d+){REF_CLOSE}|{SUB_OPEN}(?P<sub>\d+){SUB_CLOSE}"
                   r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<modifier>[^}]*)\}"
                   r"|\$(?P<var>[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])")


class Command(NamedTuple):
    """One simple command after its wrappers (`sudo`, `env X=1`, ...): what runs, with which words."""

    program: str  # basename, `/bin/rm` -> `rm`; empty when the program itself is a value we cannot see
    args: list[str]  # words after the program; placeholders kept, see `literal`
    redirects: list[tuple[str, str]]  # (operator, target word)
    pipeline: int  # commands with the same number are joined by `|`
    stage: int  # position in that pipeline


class Hole(NamedTuple):
    """A part of a word whose value is only known when the command runs."""

    kind: Literal["ref", "sub", "var"]
    start: int
    end: int
    ref: Reference | None = None
    var: str = ""  # shell variable name
    modifier: str = ""  # what follows the name in `${NAME...}`, e.g. `:?` or `:-default`


@dataclass
class Script:
    """A parsed command line; `refs` are shared with every nested script parsed from it."""

    commands: list[Command]
    refs: list[Reference]
    subs: list[tuple[Literal["command", "process", "arithmetic"], Script]] = field(default_factory=list)

    def holes(self, word: str) -> list[Hole]:
        holes = []
        for m in _HOLE.finditer(word):
            if m["ref"] is not None:
                holes.append(Hole("ref", m.start(), m.end(), ref=self.refs[int(m["ref"])]))
            elif m["sub"] is not None:
                holes.append(Hole("sub", m.start(), m.end()))
            else:
                holes.append(Hole("var", m.start(), m.end(), var=m["braced"] or m["var"], modifier=m["modifier"] or ""))
        return holes

    def sub(self, word: str) -> list[tuple[str, Script]]:
        """The substitutions (`$(...)`, `<(...)`) inside a word."""
        return [self.subs[int(m["sub"])] for m in _HOLE.finditer(word) if m["sub"] is not None]

    def show(self, word: str) -> str:
        """A word as the user wrote it, near enough for a message."""
        word = re.sub(rf"{REF_OPEN}(\d+){REF_CLOSE}", lambda m: self.refs[int(m[1])].raw, word)
        return literal(re.sub(rf"{SUB_OPEN}\d+{SUB_CLOSE}|{ARITHMETIC}", "$(...)", word))


def literal(word: str) -> str:
    return word.translate(_UNPROTECT_ALL)


def basename(word: str) -> str:
    return posixpath.basename(literal(word))


def mark_references(text: str, variables: Mapping[str, str]) -> tuple[str, list[Reference]]:
    """References become placeholders; variables are inlined, quoted as the engine quotes their values."""
    refs: list[Reference] = []
    return "".join(_mark(text, variables, refs, quote=False, depth=0)), refs


def _mark(text: str, variables: Mapping[str, str], refs: list[Reference], *, quote: bool,
          depth: int) -> Iterator[str]:
    try:
        found = find_references(text)
    except ReferenceSyntaxError:
        found = []
    position = 0
    for ref in found:
        yield _plain(text[position:ref.start], quote)
        raw = ref.raw[2:].lstrip().startswith("raw:")
        if ref.kind == "name" and ref.name in variables and depth < _MAX_DEPTH:
            yield from _mark(variables[ref.name], variables, refs, quote=quote or not raw, depth=depth + 1)
        else:
            yield f"{REF_OPEN}{len(refs)}{REF_CLOSE}"
            refs.append(ref)
        position = ref.end
    yield _plain(text[position:], quote)


def _plain(text: str, quote: bool) -> str:
    text = text.replace("$${", "${")
    return shlex.quote(text) if quote and text else text


def parse_shell(text: str, refs: list[Reference], depth: int = 0) -> Script:
    """Parse text run by `/bin/sh -c`, with references already marked."""
    script = Script([], refs)
    if depth > _MAX_DEPTH:
        return script
    prepared = _Prepass(text, script, depth).run()
    lexer = shlex.shlex(prepared, posix=True, punctuation_chars=_OPERATOR_CHARS)
    lexer.whitespace, lexer.whitespace_split, lexer.commenters = " \t\r", True, ""
    script.commands = _commands(list(lexer))
    return script


def parse_argv(argv: list[str], variables: Mapping[str, str]) -> Script:
    """Parse a program and its arguments run without a shell: every item is exactly one word."""
    refs: list[Reference] = []
    words = []
    for item in argv:
        marked = "".join(_mark(item, variables, refs, quote=False, depth=0))
        words.append("".join(_PROTECTED.get(c, c) for c in marked))
    command = _unwrap(words, [], 0, 0)
    return Script([command] if command else [], refs)


class _Prepass:
    """Walks the text once, tracking quotes, and rewrites what `shlex` cannot see."""

    def __init__(self, text: str, script: Script, depth: int) -> None:
        self.text, self.script, self.depth = text, script, depth
        self.out: list[str] = []
        self.heredocs: list[tuple[str, bool]] = []  # pending (delimiter, strip leading tabs)

    def run(self) -> str:
        text, i, quote = self.text, 0, ""
        while i < len(text):
            c = text[i]
            if quote == "'":
                quote = "" if c == "'" else quote
                self.out.append(_PROTECTED.get(c, c) if quote else c)
                i += 1
            elif c == "\\":
                i = self._escape(i, quote)
            elif c == "`" or text.startswith("$(", i) or (not quote and text.startswith(("<(", ">("), i)):
                i = self._substitution(i)
            elif quote == '"':
                quote = "" if c == '"' else quote
                self.out.append(c if c in '"$' else _PROTECTED.get(c, c))
                i += 1
            elif c in "'\"":
                quote = c
                self.out.append(c)
                i += 1
            elif c == "#" and (i == 0 or text[i - 1] in " \t\n;|&()"):
                i = text.find("\n", i) if "\n" in text[i:] else len(text)
            elif text.startswith("<<", i) and not text.startswith("<<<", i):
                i = self._heredoc(i)
            elif c == "\n" and self.heredocs:
                self.out.append(c)
                i = self._skip_heredoc_bodies(i + 1)
            else:
                self.out.append(c)
                i += 1
        return "".join(self.out) + quote  # an unclosed quote is closed, as the shell would refuse to run it

    def _escape(self, i: int, quote: str) -> int:
        following = self.text[i + 1:i + 2]
        if following in ("", "\n"):
            return i + 2  # a line continuation (or a stray final backslash) disappears
        if quote and following not in '$`"\\':
            self.out.append("\\\\")  # inside double quotes this backslash is literal
            return i + 1
        self.out.append(_PROTECTED[following] if quote and following in "$`" else "\\" + _PROTECTED.get(following,
                                                                                                       following))
        return i + 2

    def _substitution(self, i: int) -> int:
        text = self.text
        if text[i] == "`":
            end = text.find("`", i + 1)
            end = len(text) if end == -1 else end
            inner, after, kind = text[i + 1:end], end + 1, "command"
        else:
            arithmetic = text.startswith("$((", i)
            end = _closing(text, i + 2)
            inner, after = text[i + 2:end], end + 1
            kind = "arithmetic" if arithmetic else "command" if text[i] == "$" else "process"
        if kind == "arithmetic":
            self.out.append(ARITHMETIC)
            return after
        self.out.append(f"{SUB_OPEN}{len(self.script.subs)}{SUB_CLOSE}")
        self.script.subs.append((kind, parse_shell(inner, self.script.refs, self.depth + 1)))
        return after

    def _heredoc(self, i: int) -> int:
        m = _HEREDOC.match(self.text, i)
        if not m:
            self.out.append("<<")
            return i + 2
        self.heredocs.append((m[3], m[1] == "-"))
        self.out.append(f"<< {m[3]}")
        return m.end()

    def _skip_heredoc_bodies(self, i: int) -> int:
        lines = self.text[i:].split("\n")
        consumed = 0
        for delimiter, tabs in self.heredocs:
            while consumed < len(lines):
                line = lines[consumed]
                consumed += 1
                if (line.lstrip("\t") if tabs else line) == delimiter:
                    break
        self.heredocs.clear()
        return min(len(self.text), i + sum(len(line) + 1 for line in lines[:consumed]))


def _closing(text: str, i: int) -> int:
    """Index of the `)` closing the `(` just before `i`, across nested parentheses and quotes."""
    depth, quote = 1, ""
    while i < len(text):
        c = text[i]
        if c == "\\" and quote != "'":
            i += 2
            continue
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(text)


def _operators(token: str) -> list[str]:
    """`);` -> `)`, `;`: shlex keeps a run of operator characters together."""
    found = []
    while token:
        operator = next(op for op in _OPERATORS + [token[0]] if token.startswith(op))
        found.append(operator)
        token = token[len(operator):]
    return found


def _commands(tokens: list[str]) -> list[Command]:
    commands: list[Command] = []
    words: list[str] = []
    redirects: list[tuple[str, str]] = []
    pipeline = stage = 0
    pending: str | None = None  # a redirection waiting for its target
    for token in tokens:
        if token and all(c in _OPERATOR_CHARS for c in token):
            for operator in _operators(token):
                if operator in _REDIRECTS:
                    if len(words) > 0 and words[-1].isdigit() and len(words[-1]) == 1:
                        words.pop()  # the descriptor of `2>`
                    pending = operator
                    continue
                if command := _unwrap(words, redirects, pipeline, stage):
                    commands.append(command)
                words, redirects, pending = [], [], None
                pipeline, stage = (pipeline, stage + 1) if operator in ("|", "|&") else (pipeline + 1, 0)
        elif pending:
            redirects.append((pending, token.translate(_UNPROTECT_SYNTAX)))
            pending = None
        else:
            words.append(token.translate(_UNPROTECT_SYNTAX))
    if command := _unwrap(words, redirects, pipeline, stage):
        commands.append(command)
    return commands


def _unwrap(words: list[str], redirects: list[tuple[str, str]], pipeline: int, stage: int) -> Command | None:
    """Strip keywords, assignments and wrappers so the program is what really runs."""
    i = 0
    while i < len(words):
        word = literal(words[i])
        name = posixpath.basename(word)
        if word in _KEYWORDS or _ASSIGNMENT.match(words[i]):
            i += 1
        elif name in _WRAPPERS and not (name == "command" and literal(" ".join(words[i + 1:i + 2])) in ("-v", "-V")):
            options, positional = _WRAPPERS[name]
            i = _skip_options(words, i + 1, options) + positional
        else:
            break
    if i >= len(words) and not redirects:
        return None
    program = basename(words[i]) if i < len(words) and not _HOLE.search(words[i]) else ""
    return Command(program, words[i + 1:], redirects, pipeline, stage)


def _skip_options(words: list[str], i: int, with_value: frozenset[str]) -> int:
    """Index of the first word after the options starting at `i`."""
    while i < len(words):
        word = literal(words[i])
        if word == "--":
            return i + 1
        if not word.startswith("-") or word == "-":
            return i
        if word.startswith("--"):
            i += 2 if word in with_value else 1
            continue
        takes = next((k for k, c in enumerate(word[1:], 1) if f"-{c}" in with_value), None)
        i += 2 if takes == len(word) - 1 else 1
    return i


class Options(NamedTuple):
    short: set[str]
    long: set[str]
    operands: list[str]


def options(args: list[str], with_value: frozenset[str] = frozenset()) -> Options:
    """Flags and operands: `-rf`, `-r -f`, `--recursive --force`, `--` ending the options."""
    short: set[str] = set()
    long: set[str] = set()
    operands: list[str] = []
    i = 0
    while i < len(args):
        word = literal(args[i])
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
