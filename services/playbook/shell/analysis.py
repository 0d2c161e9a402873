"""A shell command as the security checks see it: every program it would run, in order.

The engine's `${...}` references become marks the parser keeps as opaque parts; text
variables are inlined, quoted as the engine quotes them, and offsets map back to the text
as written. Walking the syntax tree gives one `Call` per simple command, in substitutions
and compound bodies too, with its wrappers taken off (`wrappers`).
"""
from __future__ import annotations

import bisect
import posixpath
import shlex
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from services.playbook.references import Reference, ReferenceSyntaxError, find_references
from services.playbook.shell.model import MAX_DEPTH, Call, Code, literal
from services.playbook.shell.syntax import (
    REF_CLOSE, REF_OPEN, Compound, Heredoc, Part, Redirect, Sequence, Simple, Word,
)
from services.playbook.shell.wrappers import unwrap


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


def marked_text(text: str, variables: Mapping[str, str]) -> str | None:
    """`mark_references`' text alone, made quickly when no variable is inlined and no `$${` is unescaped (most
    commands); else None. The screen reads only the text, and most commands pass it."""
    if "$${" in text:
        return None
    try:
        found = find_references(text)
    except ReferenceSyntaxError:
        return None
    pieces: list[str] = []
    position = 0
    for n, ref in enumerate(found):
        if ref.kind == "name" and ref.name in variables:
            return None
        pieces += (text[position:ref.start], f"{REF_OPEN}{n}{REF_CLOSE}")
        position = ref.end
    pieces.append(text[position:])
    return "".join(pieces)


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
    if "$${" not in text:
        reach.append(Reach(_length(out), written, exact))
        out.append(text)
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
