"""Shell text to a syntax tree with offsets: the POSIX grammar, plus the bash forms playbooks use.

Recursive descent written here rather than `bashlex`: bashlex is GPLv3+ (a dependency that
would bind the engine's licence), raises on `case` patterns, `[[ ]]`, arrays, `$((...))` and
`time` (each a place a command could hide from the checks) and took about 1.5 ms a command.
This parser never raises: text the grammar cannot place is skipped and parsing goes on, as
a shell runs every command before a syntax error. Nesting deeper than `MAX_NEST` is left
unparsed (`body=None`), so recursion stays far from Python's limit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

REF_OPEN, REF_CLOSE = "\ue000", "\ue001"  # `\ue000<n>\ue001` stands for the engine's n-th `${...}` reference
MAX_NEST = 40
PartKind = Literal["text", "param", "command", "process", "arith", "ref"]
_PLAIN = re.compile(r"[^ \t\n\r\f\v'\"\\$`;&|()<>\ue000]+")  # the shell's blanks only: \xa0 is a letter to sh
_TOKEN = re.compile(  # blanks, then a comment, a newline, a plain word, an operator (with its fd), or the end
    r"(?:[ \t\r\f\v]|\\\n)*(?:(?P<comment>#[^\n]*)|(?P<nl>\n)"
    r"|(?P<word>(?![0-9]+[<>]|\{[A-Za-z_][A-Za-z0-9_]*\}[<>])[^ \t\n\r\f\v'\"\\$`;&|()<>\ue000#]"
    r"[^ \t\n\r\f\v'\"\\$`;&|()<>\ue000]*(?=[ \t\n\r\f\v;&|()<>]|\Z))"
    r"|(?P<fd>[0-9]{1,9}(?=[<>])|\{[A-Za-z_][A-Za-z0-9_]*\}(?=[<>]))?(?P<op>(?![<>]\()(?:&&|\|\||;;&|;;|;&|\|&"
    r"|&>>|&>|<<<|<<-|<<|<>|>>|>\||>&|<&|[;&|()<>]))|(?P<eof>\Z))?")
_PARENS = re.compile(r"[ \t]*\(")  # `name (` may start a function definition
_EXPANSIONS = frozenset("$`" + REF_OPEN)
_DQ_PLAIN = re.compile(r"[^\"\\$`\ue000]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPECIAL = "0123456789@*#?$!-"
_REF = re.compile("\ue000(\\d+)\ue001")
_BLANK = re.compile(r"(?:[ \t\r\f\v]|\\\n)+")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
REDIRECTS = frozenset({"<", ">", ">>", ">|", "<>", "<<", "<<-", "<<<", ">&", "<&", "&>", "&>>"})
_CLOSERS = frozenset({"}", "then", "do", "done", "fi", "else", "elif", "esac"})
_ESCAPE = re.compile(r"x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{1,4})|U([0-9A-Fa-f]{1,8})|0?([0-7]{1,3})")
_ANSI = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "v": "\v",
         "\\": "\\", "'": "'", '"': '"', "?": "?"}


class Part(NamedTuple):
    """A piece of a word: literal text, or something the shell fills in when it runs."""

    kind: PartKind
    text: str  # text: the characters after quote removal; param: the name; ref: the reference's index
    quoted: bool  # inside quotes or escaped: no globbing, no splitting
    start: int
    modifier: str = ""  # param: what follows the name in ${NAME...}; text: "$'" for ANSI-C quoting, '"' opens "..."
    body: Sequence | None = None  # command, process: the commands inside; None when nested too deep
    inner: tuple[Part, ...] = ()  # substitutions inside a ${...} modifier or a $((...))


class Word:
    """A shell word: its offsets and parts; `static` when its value is written out (no expansion, reference or
    substitution in it), `value` after quote removal with expansions as written (`$x`, `$(...)`)."""

    __slots__ = ("start", "end", "parts", "static", "value")

    def __init__(self, start: int, end: int, parts: list[Part]) -> None:
        self.start, self.end, self.parts = start, end, parts
        if len(parts) == 1 and parts[0].kind == "text":  # most words: one literal, built in one step
            self.static, self.value = True, parts[0].text
            return
        static, pieces = True, []
        for part in parts:
            if part.kind == "text":
                pieces.append(part.text)
            else:
                static = False
                pieces.append(_shown(part))
        self.static, self.value = static, "".join(pieces)

    @property
    def keyword(self) -> str:
        """The word when it could be a reserved word (one unquoted literal), else ""."""
        parts = self.parts
        return parts[0].text if len(parts) == 1 and parts[0].kind == "text" and not parts[0].quoted else ""

    def __repr__(self) -> str:
        return f"Word({self.start}, {self.end}, {self.value!r})"


def _shown(part: Part) -> str:
    if part.kind == "text":
        return part.text
    if part.kind == "param":
        return f"${{{part.text}{part.modifier}}}" if part.modifier else f"${part.text}"
    if part.kind == "ref":
        return f"{REF_OPEN}{part.text}{REF_CLOSE}"
    return {"command": "$(...)", "process": f"{part.text}(...)", "arith": "$((...))"}[part.kind]


@dataclass(slots=True)
class Heredoc:
    delimiter: str
    strip_tabs: bool
    quoted: bool  # a quoted delimiter: the body is taken literally
    body: str = ""
    start: int = 0
    parts: list[Part] = field(default_factory=list)  # unquoted: the body's expansions (substitutions run!)


@dataclass(slots=True)
class Redirect:
    op: str
    fd: str
    start: int
    target: Word | None = None
    heredoc: Heredoc | None = None


@dataclass(slots=True)
class Simple:
    start: int
    assigns: list[Word]
    words: list[Word]
    redirects: list[Redirect]


@dataclass(slots=True)
class Compound:
    """`{ }`, `( )`, if, while, until, for, select, case, function, `(( ))`, `[[ ]]`."""

    kind: str
    start: int
    bodies: list[Sequence] = field(default_factory=list)  # if: condition, branch, ...; loops: condition, body
    words: list[Word] = field(default_factory=list)  # for: the list; case: subject and patterns; [[ ]]: its words
    redirects: list[Redirect] = field(default_factory=list)
    name: str = ""  # function name; `for`: the variable; `(( ))`: the expression


Command = Simple | Compound


@dataclass(slots=True)
class Pipeline:
    start: int
    commands: list[Command]
    background: bool = False  # ended by `&`
    negated: bool = False


@dataclass(slots=True)
class Sequence:
    start: int
    pipelines: list[Pipeline]


class _Token(NamedTuple):
    kind: Literal["word", "op", "nl", "eof"]
    start: int
    end: int
    text: str  # op: the operator; word: its keyword (see Word.keyword)
    word: Word | None = None
    fd: str = ""
    heredoc: Heredoc | None = None


def parse(text: str, base: int = 0) -> Sequence:
    """The commands of `text`; offsets count from `base`. Never raises."""
    return _Parser(text, 0, len(text), [0], base).program(nested=False)


class _Parser:
    """One lexer-and-parser over `s[i:end]`; substitutions get their own, on the same text."""

    def __init__(self, s: str, i: int, end: int, nest: list[int], base: int) -> None:
        self.s, self.i, self.end, self.nest, self.base = s, i, end, nest, base
        self.buffer: list[_Token] = []
        self.pending: list[Heredoc] = []
        self.taken = 0  # tokens consumed, to see that a loop made progress

    # --- grammar ---

    def program(self, *, nested: bool) -> Sequence:
        start = self.peek().start
        pipelines: list[Pipeline] = []
        while True:
            pipelines += self.sequence().pipelines
            token = self.peek()
            if token.kind == "eof" or (nested and token.text == ")" and token.kind == "op"):
                return Sequence(self.base + start, pipelines)
            self.take()  # a token no command can start with: skip it and read on

    def sequence(self) -> Sequence:
        self.newlines()
        pipelines: list[Pipeline] = []
        start = self.peek().start
        while self.starts_command(self.peek()):
            if not self.and_or(pipelines):
                break
            token = self.peek()
            if token.kind == "op" and token.text in (";", "&"):
                self.take()
                pipelines[-1].background = token.text == "&"
            elif token.kind != "nl":
                break
            self.newlines()
        return Sequence(self.base + start, pipelines)

    def and_or(self, pipelines: list[Pipeline]) -> bool:
        first = self.pipeline()
        if first is None:
            return False
        pipelines.append(first)
        while (token := self.peek()).kind == "op" and token.text in ("&&", "||"):
            self.take()
            self.newlines()
            following = self.pipeline()
            if following is None:
                break
            pipelines.append(following)
        return True

    def pipeline(self) -> Pipeline | None:
        start = self.peek().start
        negated = False
        while self.peek().text in ("!", "time") and self.peek().kind == "word":
            negated |= self.take().text == "!"
            while self.peek().kind == "word" and self.peek().text in ("-p", "--"):
                self.take()
        command = self.command()
        if command is None:
            return Pipeline(self.base + start, [], negated=negated) if negated else None
        commands = [command]
        while (token := self.peek()).kind == "op" and token.text in ("|", "|&"):
            self.take()
            self.newlines()
            if (command := self.command()) is None:
                break
            commands.append(command)
        return Pipeline(self.base + start, commands, negated=negated)

    def command(self) -> Command | None:
        token = self.peek()
        if token.kind == "op" and token.text == "(":
            if self.s.startswith("((", token.start):
                return self.redirected(self.arithmetic(token))
            return self.redirected(self.nested("subshell", token, ")"))
        if token.kind != "word":
            return self.simple() if token.kind == "op" and token.text in REDIRECTS else None
        keyword = token.text
        if keyword == "{":
            return self.redirected(self.nested("group", token, "}"))
        if keyword in ("if", "while", "until", "for", "select", "case", "function", "[[") and self.deeper():
            compound = getattr(self, "_" + {"[[": "cond"}.get(keyword, keyword))(self.take())
            self.nest[0] -= 1
            return self.redirected(compound)
        if keyword and "=" not in keyword and _PARENS.match(self.s, token.end, self.end):
            following, closing = self.peek(1), self.peek(2)
            if following.text == "(" and closing.text == ")" and following.kind == closing.kind == "op":
                if self.deeper():
                    self.take(), self.take(), self.take()
                    compound = self.function_body(token.word.value if token.word else keyword, token.start)
                    self.nest[0] -= 1
                    return self.redirected(compound)
        return self.simple()

    def simple(self) -> Simple | None:
        start = self.peek().start
        assigns: list[Word] = []
        words: list[Word] = []
        redirects: list[Redirect] = []
        buffer = self.buffer
        while True:
            token = buffer[0] if buffer else self.peek()
            if token.kind == "word" and token.word is not None:
                self.take()
                if not words and _assignment(token.word):
                    assigns.append(token.word)
                    if token.word.value.endswith("=") and self.s.startswith("(", token.end):
                        self.array_value()
                else:
                    words.append(token.word)
            elif token.kind == "op" and token.text in REDIRECTS:
                redirects.append(self.redirect())
            else:
                break
        if not (assigns or words or redirects):
            return None
        return Simple(self.base + start, assigns, words, redirects)

    def array_value(self) -> None:
        """`a=(x y)`: the values are words; they run nothing, but substitutions in them do."""
        self.take()
        while (token := self.peek()).kind in ("word", "nl"):
            self.take()
        if token.text == ")":
            self.take()

    def redirect(self) -> Redirect:
        token = self.take()
        redirect = Redirect(token.text, token.fd, self.base + token.start, heredoc=token.heredoc)
        if token.heredoc is not None:
            redirect.target = token.word
        elif self.peek().kind == "word":
            redirect.target = self.take().word
        return redirect

    def redirected(self, compound: Compound) -> Compound:
        while (token := self.peek()).kind == "op" and token.text in REDIRECTS:
            compound.redirects.append(self.redirect())
        return compound

    def nested(self, kind: str, opening: _Token, closer: str) -> Compound:
        self.take()
        compound = Compound(kind, self.base + opening.start)
        if self.deeper():
            compound.bodies.append(self.sequence())
            self.nest[0] -= 1
        self.expect(closer)
        return compound

    def arithmetic(self, opening: _Token) -> Compound:
        close = _closing_parens(self.s, opening.start, self.end)
        self.buffer.clear()
        self.i = close
        return Compound("arith", self.base + opening.start, name=self.s[opening.start + 2:max(close - 2, 0)])

    def _if(self, token: _Token) -> Compound:
        compound = Compound("if", self.base + token.start)
        while True:
            compound.bodies.append(self.sequence())
            self.expect("then")
            compound.bodies.append(self.sequence())
            if self.peek().text == "elif" and self.peek().kind == "word":
                self.take()
                continue
            if self.peek().text == "else" and self.peek().kind == "word":
                self.take()
                compound.bodies.append(self.sequence())
            self.expect("fi")
            return compound

    def _while(self, token: _Token, kind: str = "while") -> Compound:
        compound = Compound(kind, self.base + token.start)
        compound.bodies.append(self.sequence())
        self.loop_body(compound)
        return compound

    def _until(self, token: _Token) -> Compound:
        return self._while(token, "until")

    def loop_body(self, compound: Compound) -> None:
        self.newlines()
        if self.peek().text == "{" and self.peek().kind == "word":  # bash's `for x in a b; { ...; }`
            self.take()
            compound.bodies.append(self.sequence())
            self.expect("}")
            return
        self.expect("do")
        compound.bodies.append(self.sequence())
        self.expect("done")

    def _for(self, token: _Token, kind: str = "for") -> Compound:
        compound = Compound(kind, self.base + token.start)
        following = self.peek()
        if following.kind == "op" and following.text == "(" and self.s.startswith("((", following.start):
            header = self.arithmetic(following)
            compound.kind, compound.name = "for((", header.name
            if self.peek().text == ";":
                self.take()
        elif following.kind == "word" and following.word is not None:
            compound.name = self.take().word.value  # type: ignore[union-attr]
            self.newlines()
            if self.peek().text == "in" and self.peek().kind == "word":
                self.take()
                while (word := self.peek()).kind == "word" and word.word is not None:
                    compound.words.append(word.word)
                    self.take()
            if self.peek().kind == "nl" or self.peek().text == ";":
                self.take()
        compound.bodies.append(Sequence(compound.start, []))  # no condition: a for loop ends
        self.loop_body(compound)
        return compound

    def _select(self, token: _Token) -> Compound:
        return self._for(token, "select")

    def _case(self, token: _Token) -> Compound:
        compound = Compound("case", self.base + token.start)
        if self.peek().kind == "word":
            compound.words.append(self.take().word)  # type: ignore[arg-type]
        self.newlines()
        self.expect("in")
        while True:
            self.newlines()
            token = self.peek()
            if token.kind == "eof" or (token.kind == "word" and token.text == "esac"):
                self.expect("esac")
                return compound
            if token.kind == "op" and token.text == "(":
                self.take()
            before = self.taken
            while (token := self.peek()).kind == "word" and token.word is not None:
                compound.words.append(self.take().word)  # type: ignore[arg-type]
                if self.peek().text == "|" and self.peek().kind == "op":
                    self.take()
            if self.peek().text == ")" and self.peek().kind == "op":
                self.take()
            compound.bodies.append(self.sequence())
            if self.peek().kind == "op" and self.peek().text in (";;", ";&", ";;&"):
                self.take()
            elif self.taken == before:
                return compound  # nothing consumed: not a case arm, let the caller recover

    def _function(self, token: _Token) -> Compound:
        name = self.take().word if self.peek().kind == "word" else None
        if self.peek().text == "(" and self.peek(1).text == ")":
            self.take(), self.take()
        return self.function_body(name.value if name else "", token.start)

    def function_body(self, name: str, start: int) -> Compound:
        self.newlines()
        body = self.command()
        sequence = Sequence(self.base + start, [Pipeline(self.base + start, [body])] if body else [])
        return Compound("function", self.base + start, [sequence], name=name)

    def _cond(self, token: _Token) -> Compound:
        compound = Compound("cond", self.base + token.start)
        while (token := self.peek()).kind in ("word", "op") and token.text != "]]":
            if token.word is not None:
                compound.words.append(token.word)
            self.take()
        self.expect("]]")
        return compound

    # --- helpers ---

    def deeper(self) -> bool:
        if self.nest[0] >= MAX_NEST:
            return False
        self.nest[0] += 1
        return True

    def starts_command(self, token: _Token) -> bool:
        if token.kind == "word":
            return token.text not in _CLOSERS
        return token.kind == "op" and (token.text == "(" or token.text in REDIRECTS)

    def expect(self, keyword: str) -> None:
        token = self.peek()
        if token.text == keyword and token.kind in ("word", "op"):
            self.take()

    def newlines(self) -> None:
        while self.peek().kind == "nl":
            self.take()

    def peek(self, k: int = 0) -> _Token:
        while len(self.buffer) <= k:
            self.buffer.append(self.lex())
        return self.buffer[k]

    def take(self) -> _Token:
        token = self.buffer.pop(0) if self.buffer else self.lex()
        self.taken += 1
        return token

    # --- lexer ---

    def lex(self) -> _Token:
        s, end = self.s, self.end
        i = self.i
        while True:  # one regex per token in the common cases; quotes and expansions go to `word`
            m = _TOKEN.match(s, i, end)
            kind = m.lastgroup  # type: ignore[union-attr]
            i = m.end()  # type: ignore[union-attr]
            if kind != "comment":
                break
        if kind == "word":
            self.i = i
            start = m.start("word")  # type: ignore[union-attr]
            at = self.base + start
            return _Token("word", start, i, m[kind], Word(at, self.base + i, [Part("text", m[kind], False, at)]))
        if kind == "op":
            op, fd, start = m["op"], m["fd"] or "", m.start("fd") if m["fd"] else m.start("op")  # type: ignore
            self.i = i
            if op in ("<<", "<<-"):
                return self.heredoc_operator(start, op, fd)
            return _Token("op", start, i, op, fd=fd)
        if kind == "nl":
            self.i = i
            self.heredoc_bodies()
            return _Token("nl", i - 1, i, "\n")
        if kind == "eof" or i >= end:
            self.i = end
            return _Token("eof", end, end, "")
        word, after = self.word(i)
        if after == i:  # cannot happen for well-formed input; keeps the lexer moving whatever it gets
            after = i + 1
        self.i = after
        return _Token("word", i, after, word.keyword, word)

    def heredoc_operator(self, start: int, op: str, fd: str) -> _Token:
        if m := _BLANK.match(self.s, self.i, self.end):
            self.i = m.end()
        delimiter, after = self.word(self.i)
        heredoc = None
        if after > self.i:
            self.i = after
            quoted = any(p.quoted for p in delimiter.parts)
            heredoc = Heredoc(delimiter.value, op == "<<-", quoted)
            self.pending.append(heredoc)
        return _Token("op", start, self.i, op, delimiter if heredoc else None, fd, heredoc)

    def heredoc_bodies(self) -> None:
        s, end = self.s, self.end
        i = self.i
        for heredoc in self.pending:
            body_start = i
            body_end = end
            while i < end:
                line_end = s.find("\n", i, end)
                line_end = end if line_end == -1 else line_end
                line = s[i:line_end]
                if (line.lstrip("\t") if heredoc.strip_tabs else line) == heredoc.delimiter:
                    body_end = i
                    i = min(line_end + 1, end)
                    break
                i = line_end + 1
            i = min(i, end)
            heredoc.body, heredoc.start = s[body_start:body_end], self.base + body_start
            if not heredoc.quoted:
                self.double_quoted(body_start, heredoc.parts, closer=False, end=body_end)
        self.pending.clear()
        self.i = i

    def word(self, i: int) -> tuple[Word, int]:
        s, end = self.s, self.end
        start = i
        parts: list[Part] = []
        while i < end:
            c = s[i]
            if c in " \t\n\r\f\v;&|()":
                break
            if c in "<>":
                if i + 1 < end and s[i + 1] == "(":
                    body, after = self.substitution(i + 2)
                    parts.append(Part("process", c, False, self.base + i, body=body))
                    i = after
                    continue
                break
            if c == "'":
                close = s.find("'", i + 1, end)
                close = end if close == -1 else close
                parts.append(Part("text", s[i + 1:close], True, self.base + i))
                i = close + 1
            elif c == '"':
                parts.append(Part("text", "", True, self.base + i, modifier="\""))
                i = self.double_quoted(i + 1, parts, closer=True, end=end)
            elif c == "\\":
                if s.startswith("\n", i + 1):
                    i += 2
                    continue
                parts.append(Part("text", s[i + 1:i + 2], True, self.base + i))
                i += 2
            elif c in _EXPANSIONS:
                i = self.expansion(c, i, parts, quoted=False)
            else:
                m = _PLAIN.match(s, i, end)
                stop = m.end() if m else i + 1
                parts.append(Part("text", s[i:stop], False, self.base + i))
                i = stop
        return Word(self.base + start, self.base + min(i, end), parts), min(i, end)

    def double_quoted(self, i: int, parts: list[Part], *, closer: bool, end: int) -> int:
        """Inside "...", or a here-document body (`closer=False`): only `$`, backticks and `\\` are special."""
        s = self.s
        escapable = '$`"\\' if closer else "$`\\"
        while i < end:
            c = s[i]
            if c == '"' and closer:
                return i + 1
            if c == "\\":
                following = s[i + 1:i + 2]
                if following == "\n":
                    i += 2
                elif following and following in escapable:
                    parts.append(Part("text", following, True, self.base + i))
                    i += 2
                else:
                    parts.append(Part("text", "\\", True, self.base + i))
                    i += 1
            elif c in _EXPANSIONS:
                i = self.expansion(c, i, parts, quoted=True)
            else:
                m = _DQ_PLAIN.match(s, i, end)
                stop = m.end() if m else i + 1
                parts.append(Part("text", s[i:stop], True, self.base + i))
                i = stop
        return end

    def expansion(self, c: str, i: int, parts: list[Part], *, quoted: bool) -> int:
        """`$...`, a backtick substitution or an engine reference at `i`; the index after it."""
        if c == "$":
            return self.dollar(i, parts, quoted=quoted)
        if c == "`":
            return self.backtick(i, parts, quoted=quoted)
        return self.reference(i, parts, quoted=quoted)

    def dollar(self, i: int, parts: list[Part], *, quoted: bool) -> int:
        s, end = self.s, self.end
        following = s[i + 1:i + 2]
        at = self.base + i
        if s.startswith("$((", i):
            close = _closing_parens(s, i + 1, end)
            inner: list[Part] = []
            self.inside(i + 3, inner, max(i + 3, close - 2))
            parts.append(Part("arith", "", quoted, at, inner=tuple(p for p in inner if p.kind != "text")))
            return close
        if following == "(":
            body, after = self.substitution(i + 2)
            parts.append(Part("command", "$", quoted, at, body=body))
            return after
        if following == "{":
            close = _closing_brace(s, i + 2, end)
            content = s[i + 2:close]
            m = re.match(r"[#!]?(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])", content)
            name = m[0] if m else ""
            inner = []
            if len(name) < len(content):
                self.inside(i + 2 + len(name), inner, close)
            parts.append(Part("param", name, quoted, at, modifier=content[len(name):],
                              inner=tuple(p for p in inner if p.kind != "text")))
            return min(close + 1, end)
        if following == "'" and not quoted:
            text, after = _ansi_c(s, i + 2, end)
            parts.append(Part("text", text, True, at, modifier="$'"))
            return after
        if following == '"' and not quoted:
            parts.append(Part("text", "", True, at, modifier="\""))
            return self.double_quoted(i + 2, parts, closer=True, end=end)
        if m := _NAME.match(s, i + 1, end):
            parts.append(Part("param", m[0], quoted, at))
            return m.end()
        if following and following in _SPECIAL:
            parts.append(Part("param", following, quoted, at))
            return i + 2
        parts.append(Part("text", "$", quoted, at))
        return i + 1

    def inside(self, i: int, parts: list[Part], end: int) -> None:
        """The substitutions within a `${...}` modifier or `$((...))`: they run too."""
        if self.nest[0] < MAX_NEST:
            self.nest[0] += 1
            self.double_quoted(i, parts, closer=False, end=end)
            self.nest[0] -= 1

    def substitution(self, i: int) -> tuple[Sequence | None, int]:
        """`$(` or `<(` at `i - 2`: parse up to the `)` that closes it."""
        if self.nest[0] >= MAX_NEST:
            return None, _closing_parens(self.s, i - 1, self.end)
        self.nest[0] += 1
        inner = _Parser(self.s, i, self.end, self.nest, self.base)
        body = inner.program(nested=True)
        self.nest[0] -= 1
        closing = inner.take()
        return body, closing.end

    def backtick(self, i: int, parts: list[Part], *, quoted: bool) -> int:
        s, end = self.s, self.end
        k = i + 1
        while k < end and s[k] != "`":
            k += 2 if s[k] == "\\" else 1
        close = min(k, end)
        inner = re.sub(r"\\([$`\\])", r"\1", s[i + 1:close])
        body = None
        if self.nest[0] < MAX_NEST:
            self.nest[0] += 1
            body = _Parser(inner, 0, len(inner), self.nest, self.base + i + 1).program(nested=False)
            self.nest[0] -= 1
        parts.append(Part("command", "`", quoted, self.base + i, body=body))
        return min(close + 1, end)

    def reference(self, i: int, parts: list[Part], *, quoted: bool) -> int:
        m = _REF.match(self.s, i, self.end)
        if m is None:
            parts.append(Part("text", REF_OPEN, quoted, self.base + i))
            return i + 1
        parts.append(Part("ref", m[1], quoted, self.base + i))
        return m.end()


def _assignment(word: Word) -> bool:
    first = word.parts[0] if word.parts else None
    return bool(first and first.kind == "text" and not first.quoted and _ASSIGNMENT.match(first.text))


def _closing_parens(s: str, i: int, end: int) -> int:
    """Index after the `)` matching the `(` at `i` (and any opened after it), skipping quotes."""
    return min(_closing(s, i, end, "()", 0) + 1, end)


def _closing_brace(s: str, i: int, end: int) -> int:
    """Index of the `}` closing a `${` whose content starts at `i`."""
    return _closing(s, i, end, "{}", 1)


def _closing(s: str, i: int, end: int, pair: str, depth: int) -> int:
    """Index of the closing character of `pair` that brings `depth` to zero, or `end`."""
    quote = ""
    opening, closing = pair
    while i < end:
        c = s[i]
        if c == "\\" and quote != "'":
            i += 2
            continue
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == opening:
            depth += 1
        elif c == closing:
            depth -= 1
            if depth <= 0:
                return i
        i += 1
    return end


def _ansi_c(s: str, i: int, end: int) -> tuple[str, int]:
    """`$'...'` from its content at `i`: the decoded text and the index after the closing quote."""
    return _decode(s, i, end, quoted=True)


def decode_escapes(text: str) -> str:
    """What `printf` or `echo -e` print for `\\x72\\x6d`: the escapes decoded (so `rm` is seen as rm)."""
    return _decode(text, 0, len(text), quoted=False)[0]


def _decode(s: str, i: int, end: int, *, quoted: bool) -> tuple[str, int]:
    out: list[str] = []
    while i < end:
        c = s[i]
        if c == "'" and quoted:
            return "".join(out), i + 1
        if c != "\\":
            out.append(c)
            i += 1
            continue
        following = s[i + 1:i + 2]
        if m := _ESCAPE.match(s, i + 1, min(end, i + 10)):
            code = int(m[1] or m[2] or m[3] or m[4], 8 if m[4] else 16)
            out.append(chr(code) if code < 0x110000 else "?")
            i += 1 + len(m[0])
        else:
            out.append(_ANSI.get(following, "\\" + following))
            i += 2
    return "".join(out), end
