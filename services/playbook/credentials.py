"""Credentials written into a playbook (PB420-PB423): anyone who can read the file, or its history, has them.

A value that is or holds a `${...}` reference, a shell variable (`$PW`, `$(cat ...)`), or a
structural placeholder (`<password>`, `{{ token }}`, `***`, `xxxx`, `...`) is not a
credential. Word-like defaults (`changeme`, `admin`, `password`) are: they ship as the real
password too often. Messages show at most the first four characters of what they found.
"""
from __future__ import annotations

import bisect
import functools
import itertools
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from services.playbook.diagnostics import Issue, Path
from services.playbook.references import ReferenceSyntaxError, find_references

_MARK = "\ue000"  # stands for a ${...} reference once references are blanked out
_KNOWN = [
    ("an AWS access key id", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")),
    ("a private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("a Slack token", re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}")),
]
_NAME = (r"[A-Za-z0-9_.-]*?(?:password|passwd|passphrase|pwd|token|secret|api[_-]?key|apikey|access[_-]?key"
         r"|secret[_-]?key|private[_-]?key|client[_-]?secret|credentials?)")
_SECRET_KEY = re.compile(_NAME, re.IGNORECASE)
_ASSIGNED = [re.compile(pattern, re.IGNORECASE) for pattern in (
    rf"(?<![\w.-])(?:--)?(?P<name>{_NAME})=[\"']?(?P<value>[^\s\"'&;,)]+)",  # password=x, ?token=x, --pwd=x
    rf"(?<![\w.-])[\"']?(?P<name>{_NAME})[\"']?\s*:\s*[\"'](?P<value>[^\"']+)[\"']",  # "password": "x", token: 'x'
    r"(?<![\w-])--(?P<name>(?:[a-z]+-)*(?:password|passwd|token|secret|api-key))\s+(?P<value>[^\s\-;&|][^\s;&|]*)",
    r"(?<![\w-])(?P<name>-u|--user)\s+[\"']?[^\s:\"']+:(?P<value>[^\s\"'@]+)",  # curl -u user:password
    r"(?P<name>authorization)\s*:\s*(?:bearer|basic|token|digest)\s+(?P<value>[^\s\"']+)",
    r"(?P<name>bearer)\s+(?P<value>[A-Za-z0-9._~+/-]{16,}=*)",
)]
_SCHEME = re.compile(r"(?:bearer|basic|token|digest)\s+", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"<[^>]*>|\{\{.*\}\}|[*xX.?_-]+|%(?:\(\w+\))?s|\$.*")
_URL = re.compile(r"(?i)\b(?P<scheme>https?)://(?:(?P<user>[^\s/?#@:]*)(?::(?P<password>[^\s/?#@]*))?@)?"
                  r"(?P<host>\[[^\]\s]*\]|[^\s/?#:]*)")
_LOOPBACK = re.compile(r"localhost|127(?:\.\d+){3}|\[::1\]", re.IGNORECASE)
_RUN = re.compile(r"[A-Za-z0-9+/_=-]{20,}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
RUN_SAMPLE = 1024
_DIGEST_LENGTHS = {32, 40, 56, 64, 96, 128}  # md5, sha1 (and git commits), sha224, sha256, sha384, sha512
_STORE = "move it to the engine's secret store and write ${secret:NAME} instead"
# What any finding below needs in the text, lower-cased: a known prefix, a credential's name, a scheme, a user's
# password in a URL (`@`); or a long run. Most values (names, commands, URLs) have none and are not searched.
# AWS and GitHub keys are long runs themselves: their prefixes are no marks (`gh` is in `right`, `length`).
_MARKS = ("-----begin", "xox", "passw", "passphrase", "pwd", "token", "secret", "api", "access", "private",
          "credential", "-u", "authorization", "bearer", "@")
_ANY_MARK = re.compile("|".join(map(re.escape, _MARKS)))  # on the lower-cased text: one scan for every mark
_LONG_RUN = re.compile(r"[A-Za-z0-9+/_=-]{20}")


def credential_issues(data: Any, path: Path = ()) -> Iterator[Issue]:
    """Hardcoded credentials in every text value of the playbook, at most one finding per value."""
    found: list[tuple[Path, str | None, str]] = []
    _suspects(data, path, None, found, 0, _dirty_sections(data))
    for at, key, value in found:
        text = _blank_references(value)
        finding = next(_findings(key, value, text), None)
        if finding:
            yield Issue(finding[0], finding[1], at)


def transport_issues(args: dict[Any, Any], at: Path) -> Iterator[Issue]:
    """An http_request that sends credentials over plain http to another host."""
    url = args.get("url")
    m = _URL.match(url) if isinstance(url, str) else None
    if not m or m["scheme"].lower() != "http" or _LOOPBACK.fullmatch(m["host"]) or m["password"] is not None:
        return
    headers = args.get("headers")
    names = {str(name).lower() for name in headers} if isinstance(headers, dict) else set()
    if names & {"authorization", "proxy-authorization", "x-api-key", "cookie"} or "${secret:" in repr(args):
        yield Issue("PB423", f"this request sends credentials over plain http to {m['host']}, where anyone on the "
                             "network path can read them; use https://", at + ("url",))


def _suspects(data: Any, path: Path, key: str | None, found: list[tuple[Path, str | None, str]], depth: int,
              dirty: set[int]) -> None:
    """The scalar texts a finding may read, in the order written, with their paths and the names they are
    assigned to (a mapping key, or a sibling `name`): the `_suspect` ones and those named like a credential.

    A section (a step, a parameter: a collection `_SECTION_DEPTH` deep) with everything in it was screened
    already (`_dirty_sections`); other collections are screened with their own texts and names at once.
    """
    if not isinstance(data, (dict, list)):
        if (value := _text(data)) is not None and (_suspect(value) or (key and _secret_key(key))):
            found.append((path, key, value))
        return
    if depth == _SECTION_DEPTH and id(data) not in dirty and not (key and _secret_key(key)):
        return
    mapping = isinstance(data, dict)
    texts = [item if type(item) is str else str(item) for item in (data.values() if mapping else data)
             if type(item) is str or isinstance(item, (str, int)) and not isinstance(item, bool)]
    names = "\n".join([k for k in data if type(k) is str] if mapping else [key or ""])  # other keys name nothing
    clean = names.isascii() and not _suspect("\n".join(texts) + "\n" + names)
    named = data.get("name") if mapping and isinstance(data.get("name"), str) else None
    screened = depth + 1 == _SECTION_DEPTH and not mapping and not (key and _secret_key(key))
    for k, item in data.items() if mapping else enumerate(data):
        if screened and id(item) not in dirty and isinstance(item, (dict, list)):
            continue  # a section screened clean, in a list whose name is no credential's: nothing to look at
        if not clean or isinstance(item, (dict, list)):
            item_key = (named if named and k in ("default", "value") else str(k)) if mapping else key
            if isinstance(item, (dict, list)):
                _suspects(item, path + (k,), item_key, found, depth + 1, dirty)
            elif (value := _text(item)) is not None and ((bool(item_key) and _secret_key(item_key)) or _suspect(value)):
                found.append((path + (k,), item_key, value))


# Texts and names are screened together: no mark and no run crosses a line break, and an ASCII name like a
# credential's holds a mark. A section is screened as its JSON (made in C: its texts and names as written, between
# quotes and punctuation, none of which is a mark or in a run; escapes only add to what is flagged), a thousand
# sections at a time as one text: a few fast scans of it instead of a walk and slow scans of each section.
_SECTION_DEPTH = 2
_BATCH = 1024
_MARK_BYTES = [mark.encode() for mark in _MARKS]
_RUN_BYTES = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_=-", b"a" * 67)
_LONG_RUN_BYTES = b"a" * 20  # of the run characters translated to `a` (no other byte is an `a`)
_json = msgspec.json.Encoder().encode


def _dirty_sections(data: Any) -> set[int]:
    """The ids of the sections whose texts or names `_suspect` may flag (and of those not plain ASCII)."""
    sections = [section for top in _collections(data) for section in _collections(top)]
    dirty: set[int] = set()
    for low in range(0, len(sections), _BATCH):
        batch = sections[low:low + _BATCH]
        screened: list[bytes] = []
        for section in batch:
            try:
                screened.append(_json(section))
            except (TypeError, ValueError, msgspec.EncodeError):  # a key or value JSON has no words for: look closer
                screened.append(b"\x80")
        dirty.update(id(batch[i]) for i in _flagged(screened))
    return dirty


def _collections(data: Any) -> list[Any]:
    items = data.values() if isinstance(data, dict) else data if isinstance(data, list) else ()
    return [item for item in items if isinstance(item, (dict, list))]


def _flagged(texts: list[bytes]) -> set[int]:
    """The indexes of the texts (JSON: no line break in them) that are not ASCII or hold a mark or a long run."""
    flagged = {i for i, text in enumerate(texts) if not text.isascii()}
    whole = b"\n".join(texts)
    ends = list(itertools.accumulate(len(text) + 1 for text in texts))  # where each text's line break is
    low = whole.lower()
    for mark in _MARK_BYTES:
        _flag(functools.partial(low.find, mark), ends, flagged)
    _flag(functools.partial(whole.translate(_RUN_BYTES).find, _LONG_RUN_BYTES), ends, flagged)
    return flagged


def _flag(find: Callable[[int], int], ends: list[int], flagged: set[int]) -> None:
    """Flag each text `find` finds something in, looking on from the next text."""
    at = find(0)
    while at != -1:
        i = bisect.bisect_right(ends, at)
        flagged.add(i)
        at = find(ends[i])


def _text(value: Any) -> str | None:
    """A scalar's text, if a finding reads it: strings and integers (not booleans)."""
    if type(value) is str:
        return value
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _blank_references(text: str) -> str:
    try:
        refs = find_references(text)
    except ReferenceSyntaxError:
        return re.sub(r"\$\{[^}]*\}", _MARK, text)
    for ref in reversed(refs):
        text = text[:ref.start] + _MARK + text[ref.end:]
    return text


def _findings(key: str | None, value: str, text: str) -> Iterator[tuple[str, str]]:
    for what, pattern in _KNOWN:
        if m := pattern.search(text):
            shown = m[0] if what == "a private key" else _hint(m[0])
            yield "PB420", f"hardcoded credential: {what} ('{shown}') is written in the playbook; {_STORE}"
    if key and _SECRET_KEY.fullmatch(key) and _literal(text):
        yield "PB420", f"hardcoded credential: '{key}' is set to the literal '{_hint(value)}'; {_STORE}"
    if key and key.lower() in ("authorization", "proxy-authorization") and _literal(_SCHEME.sub("", text, 1)):
        yield "PB420", f"hardcoded credential: the {key} header is the literal '{_hint(value)}'; {_STORE}"
    for pattern in _ASSIGNED:
        for m in pattern.finditer(text):
            if _literal(m["value"]):
                yield "PB420", (f"hardcoded credential: {m['name']} is given the literal '{_hint(m['value'])}'; "
                                f"{_STORE}")
    for m in _URL.finditer(text):
        if m["password"] and m["scheme"].lower() == "http":
            yield "PB422", (f"the URL for {m['host']} carries a user name and password over plain http, where "
                            "anyone on the network path can read them; use https:// and ${secret:NAME}")
        elif m["password"] and _literal(m["password"]):
            yield "PB420", (f"hardcoded credential: the URL for {m['host']} holds the password "
                            f"'{_hint(m['password'])}'; {_STORE}")
    for run in _RUN.findall(text):
        if _random(run.rstrip("=")):
            yield "PB421", (f"'{_hint(run)}' ({len(run)} characters) looks like a random key or token; if it is a "
                            f"credential, {_STORE}")


def _suspect(value: str) -> bool:
    return _ANY_MARK.search(value.lower()) is not None or _LONG_RUN.search(value) is not None


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    """A key whose value a finding reads whatever it holds: a credential's name or an Authorization header."""
    return bool(_SECRET_KEY.fullmatch(key)) or key.lower() in ("authorization", "proxy-authorization")


def _literal(value: str) -> bool:
    """True for a value written out in the playbook; false for references, variables and placeholders."""
    value = value.strip().strip("\"'")
    return bool(value) and _MARK not in value and not _PLACEHOLDER.fullmatch(value)


def _hint(secret: str) -> str:
    return secret[:min(4, len(secret) // 2)] + "***"


def _random(run: str) -> bool:
    """Shannon entropy and mixing of character classes, tuned so words, paths and digests pass. A long run is
    judged by its first RUN_SAMPLE characters: a key is random in any part, and a 4 MiB blob took seconds."""
    run = run[:RUN_SAMPLE] if len(run) > RUN_SAMPLE else run
    if _UUID.fullmatch(run):
        return False
    if re.fullmatch(r"[0-9a-fA-F]+", run):
        return len(run) not in _DIGEST_LENGTHS and _entropy(run) >= 3.0 and not run.isdigit() and not run.isalpha()
    classes = [c.isupper() * 1 + c.islower() * 2 + c.isdigit() * 3 for c in run]
    switches = sum(a != b for a, b in zip(classes, classes[1:]))
    return {1, 2, 3} <= set(classes) and switches >= 0.4 * len(run) and _entropy(run) >= 3.5


def _entropy(text: str) -> float:
    counts = [text.count(c) for c in set(text)]
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts)
