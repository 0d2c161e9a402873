"""Redaction: every secret, in the forms it is commonly printed in, becomes `***`, and no cut ends inside one.

Forms of each secret: as is, also with its special characters percent-encoded (`+` for a
space), JSON- or backslash-escaped or shell-quoted; every character percent-encoded or `\\u`-escaped;
reversed; hex in any case; base64 and
base64url at each of the three offsets it can take inside a longer stream (the characters
that depend on the secret alone). Line breaks are ignored while matching, so folded output
and wrapped base64 or hex are caught too. What this cannot see is listed in docs/security.md.
"""
from __future__ import annotations

import base64
import functools
import json
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MASK = "***"
_BREAKS = re.compile(r"[\r\n]")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")   # never changed by an encoding

Unit = tuple[str, ...]   # the texts one character of a form may be printed as


@dataclass(frozen=True, slots=True)
class _Form:
    units: tuple[Unit, ...]
    pattern: re.Pattern[str]
    core: str        # a literal every match contains: the pattern only runs around where it is
    folded: bool     # `core` is looked for in the lower-cased text
    before: int      # at most this many characters of a match come before its core
    after: int       # and after it


class Redactor:
    """Hides a fixed set of secrets; build it once per set (`redactor_for`), use it on many texts."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: dict[str, _Form] = {}
        for secret in secrets:
            for form in _forms(secret) if _flat(secret) else ():
                if form.units:
                    forms.setdefault(form.pattern.pattern, form)
        self.forms = list(forms.values())
        self._starts: dict[str, list[_Form]] = {}
        for form in self.forms:
            for first in {alt[0] for alt in form.units[0] if alt}:
                self._starts.setdefault(first, []).append(form)
        self._longest = max((form.before + len(form.core) + form.after for form in self.forms), default=0)
        self._window = 4 * self._longest + 8   # room for the line breaks of folded output

    def __bool__(self) -> bool:
        return bool(self.forms)

    def __call__(self, value: Any) -> Any:
        """The value with every secret inside its text (or its lists' and dicts' text) replaced by `***`."""
        if not self.forms:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self(item) for item in value]
        if isinstance(value, dict):
            return {self(key): self(item) for key, item in value.items()}
        return value

    def text(self, text: str, start: int = 0) -> str:
        """`text[start:]` with every secret replaced by `***`, counting those that begin before `start`
        (text already sent, kept as context so that a secret split across two sends is still caught)."""
        flat = _flat(text)
        spans = self._spans(flat)
        if not spans:
            return text[start:] if start else text
        return _masked(text, flat, spans, start)

    def safe_end(self, text: str, shortest: int = 1) -> int:
        """Where to cut `text` so that it does not end with the first `shortest` or more characters of a secret,
        in any of its forms (cutting one such ending can leave another: the cut repeats until none is left)."""
        end = len(text)
        while self.forms and end:
            cut = self._partial_start(text[:end], shortest)
            if cut == end:
                break
            end = cut
        return end

    def _partial_start(self, text: str, shortest: int) -> int:
        offset = max(0, len(text) - self._window)
        tail = text[offset:]
        flat = _flat(tail)
        whole = _merged(self._spans(flat))
        masked_from = whole[-1][0] if whole and whole[-1][1] == len(flat) else len(flat)   # to be redacted anyway
        first = max(0, len(flat) - self._longest)
        for i in range(first, min(masked_from, len(flat) - shortest + 1)):
            if any(_runs_to_end(form.units, flat, i) for form in self._starts.get(flat[i], ())):
                return offset + (_Positions(tail).index(i) if flat is not tail else i)
        return len(text)

    def _spans(self, flat: str) -> list[tuple[int, int]]:
        """Where whole forms of the secrets are, in text without line breaks."""
        lowered = flat.lower() if flat.isascii() else None   # lower() keeps positions only for ASCII
        spans: list[tuple[int, int]] = []
        for form in self.forms:
            if not form.core or (form.folded and lowered is None):
                spans += [m.span() for m in form.pattern.finditer(flat)]
                continue
            haystack = lowered if form.folded else flat
            found = haystack.find(form.core)
            while found != -1:
                window = (max(0, found - form.before), min(len(flat), found + len(form.core) + form.after))
                spans += [m.span() for m in form.pattern.finditer(flat, *window)]
                found = haystack.find(form.core, found + 1)
        return spans

    @property
    def reach(self) -> int:
        """How far back a secret that ends in new text may begin: the context `text(..., start)` needs."""
        return self._window


@functools.lru_cache(maxsize=256)
def _cached(secrets: frozenset[str]) -> Redactor:
    return Redactor(secrets)


def redactor_for(secrets: Iterable[str]) -> Redactor:
    """The redactor of a set of secrets, compiled once and reused."""
    return _cached(secrets if isinstance(secrets, frozenset) else frozenset(secrets))


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """Replace every secret (in every form) inside text, or inside lists and dicts of it, with `***`."""
    return redactor_for(secrets)(value) if secrets else value


def _flat(text: str) -> str:
    """The text without line breaks (the same object if it has none)."""
    if "\n" in text or "\r" in text:
        return text.replace("\r", "").replace("\n", "")
    return text


def _forms(secret: str) -> list[_Form]:
    flat = _flat(secret)
    raw = secret.encode()
    forms = [_form([_char_forms(c) for c in secret.strip("\r\n")]), _form([(c,) for c in reversed(flat)]),
             _form([(d, d.upper()) if d.isalpha() else (d,) for d in raw.hex()], folded=True)]
    # Encoders that escape every character, not only those that need it: %73%33..., \u0073\u0033...
    every = ["".join(f"%{b:02x}" for b in raw), "".join(f"\\u{unit:04x}" for unit in _utf16(flat))]
    forms += [_form([(d, d.upper()) if d in "abcdef" else (d,) for d in text], folded=True) for text in every]
    for offset in range(3):
        stable = _stable_base64(raw, offset)
        forms.append(_form([{"+": ("+", "-"), "/": ("/", "_")}.get(c, (c,)) for c in stable]))
    return forms


def _utf16(text: str) -> list[int]:
    """The UTF-16 code units of the text, as JSON's `\\u` escapes write them (a surrogate pair beyond U+FFFF)."""
    data = text.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def _char_forms(c: str) -> Unit:
    """How one character of a secret may appear once its text has been encoded or escaped (a line break also
    as nothing: matching ignores line breaks)."""
    if c in _UNRESERVED:
        return (c,)
    data = c.encode()
    forms = ["" if c in "\r\n" else c, "".join(f"%{b:02X}" for b in data), "".join(f"%{b:02x}" for b in data)]
    if c == " ":
        forms.append("+")
    if c in "\"\\/":
        forms.append("\\" + c)
    if c == "'":
        forms += ["\\'", "'\"'\"'", "'\\''"]
    if ord(c) < 32 or ord(c) > 126:   # JSON's escapes: \n, \u00e9, a surrogate pair; hex in either case
        escaped = json.dumps(c)[1:-1]
        forms += [escaped, re.sub(r"[0-9a-f]{4}", lambda m: m[0].upper(), escaped)]
    return tuple(dict.fromkeys(sorted(forms, key=len, reverse=True)))


def _stable_base64(data: bytes, offset: int) -> str:
    """The base64 characters that encode only bits of `data` when it starts `offset` bytes into a 3-byte group."""
    encoded = base64.b64encode(bytes(offset) + data + bytes(2)).decode()
    first = -(-8 * offset // 6)
    last = (8 * offset + 8 * len(data)) // 6
    return encoded[first:last]


def _form(units: list[Unit], folded: bool = False) -> _Form:
    pattern = "".join(re.escape(unit[0]) if len(unit) == 1 else "(?:" + "|".join(map(re.escape, unit)) + ")"
                      for unit in units)
    start, core = max(_literal_runs(units, folded), key=lambda run: len(run[1]), default=(0, ""))
    if len(core) < 4:
        start, core = len(units), ""
    widest = [max(map(len, unit)) for unit in units]
    return _Form(tuple(units), re.compile(pattern), core, folded, sum(widest[:start]),
                 sum(widest[start + len(core):]))


def _literal_runs(units: list[Unit], folded: bool) -> list[tuple[int, str]]:
    """Stretches of the form printed the same way in every match (up to case, if `folded`), with where they
    start (in units)."""
    runs, start, current = [], 0, ""
    for index, unit in enumerate(units):
        if len(unit) == 1 or (folded and len({alt.lower() for alt in unit}) == 1):
            current += unit[0].lower() if folded else unit[0]
        else:
            runs.append((start, current))
            start, current = index + 1, ""
    return [*runs, (start, current)]


def _runs_to_end(units: tuple[Unit, ...], text: str, start: int) -> bool:
    """Whether `text[start:]` is the beginning of a match of the form, but not all of it (that is redacted)."""
    states, end = {start}, len(text)
    for last, unit in enumerate(units, 1 - len(units)):
        following = set()
        for position in states:
            for alt in unit:
                if text.startswith(alt, position):
                    if position + len(alt) == end and last:
                        return True
                    following.add(position + len(alt))
                elif end - position < len(alt) and alt.startswith(text[position:]):
                    return True
        if not following:
            return False
        states = following
    return False


def _masked(text: str, flat: str, spans: list[tuple[int, int]], start: int) -> str:
    """`text[start:]` with the spans (found in `flat`, the text without line breaks) replaced by the mask."""
    where = _Positions(text) if flat is not text else None
    pieces, position = [], start
    for first, end in _merged(spans):
        if where is not None:
            first, end = where.index(first), where.index(end - 1) + 1
        if end <= start:
            continue
        pieces += [text[position:max(first, start)], MASK]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


class _Positions:
    """Where each character of the text without line breaks is in the text; asked in increasing order."""

    def __init__(self, text: str) -> None:
        self.text, self.scanned, self.breaks = text, 0, 0

    def index(self, flat_index: int) -> int:
        at = flat_index + self.breaks
        while more := self.text.count("\n", self.scanned, at + 1) + self.text.count("\r", self.scanned, at + 1):
            self.scanned, self.breaks = at + 1, self.breaks + more
            at = flat_index + self.breaks
        self.scanned = at + 1
        return at


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
