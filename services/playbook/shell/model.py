"""The shell checks' vocabulary: a piece of code, a program run within it, and what the checks report."""
from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from services.playbook.references import Reference
from services.playbook.shell.syntax import REF_CLOSE, REF_OPEN, Heredoc, Part, Redirect, Word

MAX_DEPTH = 8  # strings run as code (sh -c '...') analysed inside one another; deeper ones count as unseen


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
