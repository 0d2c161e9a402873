"""A value inserted into a shell command as exactly its text, whatever quotes the author wrote around it.

`shlex.quote` makes one word of a value where a word may start; inside the author's own quotes its single
quotes closed theirs (`'${p}'` with p = `$(id)` ran id), inside a comment a newline ended the comment, inside
backquotes a backquote ended the substitution, inside a here-document `$(...)` was expanded. So the command's
text before each reference is read as the shell reads it, and the value is written for the place it lands.
"""
from __future__ import annotations

import re
import shlex

from services.errors import UnresolvedReference

_HEREDOC = re.compile(r"<<-?\s*(?:'([^'\n]*)'|\"([^\"\n]*)\"|\\?([A-Za-z0-9_.-]+))")
_WORD_BREAK = " \t\n;&|()<>"


class ShellPlaces:
    """Reads a command's literal text piece by piece; `insert` writes a value for where reading stands."""

    def __init__(self) -> None:
        self.stack: list[str] = ["cmd"]   # cmd, sub ($(...)), bq (`...`), sq, dq, ansi ($'...'), comment, heredoc
        self.depth: list[int] = []        # open parentheses inside each $( ... )
        self.pending: list[tuple[str, bool]] = []   # here-documents announced on this line: (delimiter, expands)
        self.heredoc: tuple[str, bool] | None = None
        self.line = ""                    # the here-document line read so far
        self.prev = "\n"

    def read(self, text: str) -> None:
        i = 0
        while i < len(text):
            i = self._step(text, i)

    def _step(self, text: str, i: int) -> int:
        c, top = text[i], self.stack[-1]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        self.prev, prev = c, self.prev
        if top == "heredoc":
            if c == "\n":
                if self.heredoc and self.line.lstrip("\t") == self.heredoc[0]:
                    self.stack.pop()
                    self._next_heredoc()
                self.line = ""
            else:
                self.line += c
            return i + 1
        if top == "comment":
            if c == "\n":
                self.stack.pop()
                return self._newline(i)
            return i + 1
        if top == "sq":
            if c == "'":
                self.stack.pop()
            return i + 1
        if top in ("ansi", "dq") and c == "\\":
            return i + 2
        if top == "ansi":
            if c == "'":
                self.stack.pop()
            return i + 1
        if top == "dq":
            if c == '"':
                self.stack.pop()
            elif c == "$" and nxt == "(":
                self._open_substitution()
                return i + 2
            elif c == "`":
                self.stack.append("bq")
            return i + 1
        # command level: cmd, sub, bq
        if c == "\\":
            return i + 2
        if c == "'":
            self.stack.append("sq")
        elif c == '"':
            self.stack.append("dq")
        elif c == "$" and nxt == "'":
            self.stack.append("ansi")
            return i + 2
        elif c == "$" and nxt == "(":
            self._open_substitution()
            return i + 2
        elif c == "`":
            if top == "bq":
                self.stack.pop()
            else:
                self.stack.append("bq")
        elif c == "#" and prev in _WORD_BREAK:
            self.stack.append("comment")
        elif c == "(" and top == "sub":
            self.depth[-1] += 1
        elif c == ")" and top == "sub":
            if self.depth[-1]:
                self.depth[-1] -= 1
            else:
                self.stack.pop()
                self.depth.pop()
        elif c == "<" and nxt == "<" and (m := _HEREDOC.match(text, i)):
            quoted = m.group(3) is None or text[m.start(3) - 1] == "\\"
            self.pending.append((m.group(1) or m.group(2) or m.group(3) or "", not quoted))
            return m.end()
        elif c == "\n":
            return self._newline(i)
        return i + 1

    def _open_substitution(self) -> None:
        self.stack.append("sub")
        self.depth.append(0)

    def _newline(self, i: int) -> int:
        self._next_heredoc()
        return i + 1

    def _next_heredoc(self) -> None:
        if self.pending:
            self.heredoc = self.pending.pop(0)
            self.stack.append("heredoc")
            self.line = ""
        else:
            self.heredoc = None

    def insert(self, value: str, raw_name: str) -> str:
        """The value written for where reading stands; afterwards the reading goes on as if it were a word."""
        top = self.stack[-1]
        if top == "heredoc":
            assert self.heredoc is not None
            delimiter, expands = self.heredoc
            if any(line.lstrip("\t") == delimiter for line in (self.line + value).split("\n")):
                raise UnresolvedReference(f"{raw_name}: its value holds the line {delimiter!r} that ends the "
                                          "here-document it is inserted into")
            self.line += value.rsplit("\n", 1)[-1]
            written = re.sub(r"([\\$`])", r"\\\1", value) if expands else value
        elif top == "comment":
            written = value.replace("\n", " ").replace("\r", " ")
        else:
            word = shlex.quote(value)
            written = {"sq": f"'{word}'", "dq": f'"{word}"', "ansi": f"'{word}$'"}.get(top, word)
        for _ in range(self.stack.count("bq")):   # each backquote level strips one level of backslashes first
            written = re.sub(r"([\\$`])", r"\\\1", written)
        self.prev = "x"
        return written
