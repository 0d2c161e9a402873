"""Redaction: a secret printed in any of its common forms becomes `***`, and no cut ends inside one."""
from __future__ import annotations

import base64
import json
import re
import shlex
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.secrets import MASK, redact, redactor_for

SECRET = "s3cr3t-Value/9f+2c x'q"
PEM = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n0xPcMkQ==\n-----END KEY-----"


def b64_inside(secret: str, offset: int, url: bool = False) -> str:
    """The secret base64-encoded `offset` bytes into a longer stream, as a tool printing a bigger blob would."""
    data = b"\x07" * offset + secret.encode() + b"tail-of-the-blob"
    return (base64.urlsafe_b64encode if url else base64.b64encode)(data).decode()


FORMS = {
    "as is": lambda s: s,
    "reversed": lambda s: s[::-1],
    "hex": lambda s: s.encode().hex(),
    "HEX": lambda s: s.encode().hex().upper(),
    "percent-encoded": lambda s: urllib.parse.quote(s, safe=""),
    "form-encoded": lambda s: urllib.parse.quote_plus(s),
    "percent-encoded, lower-case hex": lambda s: re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(),
                                                        urllib.parse.quote(s, safe="")),
    "JSON string": lambda s: json.dumps(s),
    "shell-quoted": lambda s: shlex.quote(s),
    "folded one character a line": lambda s: "\n".join(s),
    "folded, CRLF": lambda s: "\r\n".join(s[i:i + 5] for i in range(0, len(s), 5)),
    **{f"base64 at offset {k}": (lambda s, k=k: b64_inside(s, k)) for k in range(3)},
    **{f"base64url at offset {k}": (lambda s, k=k: b64_inside(s, k, url=True)) for k in range(3)},
    "base64, wrapped at 76": lambda s: base64.encodebytes(b"x" * 40 + s.encode() * 3).decode(),
    "hex, wrapped like xxd -p": lambda s: "\n".join((b"\x01" * 20 + s.encode()).hex()[i:i + 60]
                                                    for i in range(0, 2 * (20 + len(s.encode())), 60)),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("secret", [SECRET, PEM, "ünïcödé-pässwörd"], ids=["symbols", "multi-line", "unicode"])
def test_every_common_form_of_a_secret_is_masked(form, secret) -> None:
    printed = f"before {FORMS[form](secret)} after"
    masked = redact(printed, {secret})
    assert MASK in masked
    assert masked.startswith("before ") and masked.endswith(" after")
    assert not _traces(masked, secret)


def test_text_without_secrets_is_left_alone() -> None:
    text = "deploying checkout 2.4.1 to node-7\nok: 3 replicas ready\n"
    assert redact(text, {SECRET}) == text


def test_lists_and_dicts_are_redacted_keys_included() -> None:
    assert redact({"out": [SECRET, 1], SECRET: True}, {SECRET}) == {"out": [MASK, 1], MASK: True}


def test_redaction_of_several_secrets_in_one_pass_merges_what_touches() -> None:
    other = "another-Secret-77"
    assert redact(f"a {SECRET}{other} b {other[::-1]}", {SECRET, other}) == f"a {MASK} b {MASK}"


@settings(max_examples=150, deadline=None)
@given(secret=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=8, max_size=40),
       prefix=st.binary(max_size=5), form=st.sampled_from(sorted(FORMS)))
def test_any_secret_in_any_form_leaves_no_trace(secret, prefix, form) -> None:
    printed = FORMS[form](secret) if not form.startswith("base64 at") else \
        base64.b64encode(prefix + secret.encode()).decode()
    assert not _traces(redact(f"<{printed}>", {secret}), secret)


@pytest.mark.parametrize("form", ["as is", "reversed", "hex", "percent-encoded", "base64 at offset 1",
                                  "folded one character a line"])
def test_a_cut_never_ends_inside_a_secret(form) -> None:
    redactor = redactor_for({SECRET})
    head = "output before it: "
    printed = head + (base64.b64encode(b"\x07" + SECRET.encode()).decode() if form.startswith("base64")
                      else FORMS[form](SECRET))
    mixed = 4 if form.startswith("base64") else 0      # characters that also encode other bits, or padding
    for cut in range(len(head) + 1, len(printed)):     # every place a size cap could fall inside the secret
        kept = redactor.text(printed[:cut][:redactor.safe_end(printed[:cut])])
        assert kept.startswith(head) and len(kept[len(head):].replace(MASK, "")) <= mixed, (cut, kept)


def test_a_cut_that_falls_after_the_whole_secret_keeps_it_for_redaction() -> None:
    redactor = redactor_for({"Zebra-Crossing-42"})
    text = "token Zebra-Crossing-42"
    assert redactor.safe_end(text) == len(text)
    assert redactor.safe_end("no secret here") == len("no secret here")


def test_cutting_off_one_beginning_does_not_leave_another() -> None:
    redactor = redactor_for({SECRET})          # it ends with 'q', and its reverse begins with it
    text = f"token {SECRET}"
    assert redactor.text(text[:redactor.safe_end(text)]) == f"token {MASK}"
    assert redactor.text(text[:-1][:redactor.safe_end(text[:-1])]) == "token "


def test_a_secret_split_across_two_sends_is_masked_with_the_first_as_context() -> None:
    redactor = redactor_for({SECRET})
    first, second = f"line {SECRET[:2]}", f"{SECRET[2:]} done"
    assert redactor.text(first + second, len(first)) == f"{MASK} done"


def _traces(text: str, secret: str) -> list[str]:
    """Forms of the secret still readable in the text (base64: the middle of each alignment's encoding)."""
    flat = text.replace("\r", "").replace("\n", "")
    candidates = {name: FORMS[name](secret) for name in FORMS if "offset" not in name and "wrapped" not in name}
    data = secret.encode()
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode()
        inner = encoded[k + 2:(4 * (k + len(data))) // 3 - 2]
        candidates[f"base64 at offset {k}"] = inner
        candidates[f"base64url at offset {k}"] = inner.replace("+", "-").replace("/", "_")
    return [name for name, printed in candidates.items()
            if len(printed) >= 8 and printed.replace("\r", "").replace("\n", "") in flat]
