"""Live output: a secret never goes out, even cut by a chunk boundary or folded over lines."""
from __future__ import annotations

import asyncio
import base64
import json

import pytest

from services.executor import live_output
from services.executor.live_output import MAX_PARTIAL_LINE, LiveOutput

SECRET = "s3cr3t-Value/9f+2c"


class Subscriber:
    """Stands where NATS and its JetStream would: keeps the lines published, and the end."""

    def __init__(self) -> None:
        self.lines: list[dict] = []
        self.ends: list[dict] = []

    def jetstream(self) -> Subscriber:
        return self

    async def publish(self, subject: str, body: bytes, **_options) -> None:
        message = json.loads(body)
        assert subject == "pb.output.run1.step1.1"
        (self.lines if message["type"] == "OutputLine" else self.ends).append(message)

    @property
    def text(self) -> str:
        return "\n".join(line["text"] for line in self.lines)


async def stream(chunks: list[bytes], secrets: set[str]) -> Subscriber:
    subscriber = Subscriber()
    live = LiveOutput(subscriber, "run1", "step1", 1, secrets)  # type: ignore[arg-type]
    for chunk in chunks:
        live(1, chunk)
    await live.close()
    return subscriber


def every_split(data: bytes) -> list[list[bytes]]:
    return [[data[:i], data[i:]] for i in range(1, len(data))]


@pytest.mark.parametrize("printed", [
    f"deploying with {SECRET} now\n",
    "folded:\n" + "\n".join(SECRET) + "\nend\n",
    f"blob {base64.b64encode(b'xx' + SECRET.encode()).decode()} end\n",
    f"reversed {SECRET[::-1]}\n",
], ids=["as is", "folded", "base64", "reversed"])
async def test_no_chunk_boundary_lets_a_secret_through(printed) -> None:
    for chunks in every_split(printed.encode()):
        sent = await stream(chunks, {SECRET})
        assert "***" in sent.text, chunks
        assert SECRET not in sent.text.replace("\n", "") and SECRET[::-1] not in sent.text, chunks
        assert SECRET[2:10] not in sent.text.replace("\n", ""), chunks


async def test_lines_that_cannot_hold_a_secret_go_out_at_once() -> None:
    subscriber = Subscriber()
    live = LiveOutput(subscriber, "run1", "step1", 1, {SECRET})  # type: ignore[arg-type]
    live(1, b"step 1 of 3 done\nstep 2 of 3 done\n")
    await live.close()
    assert [line["text"] for line in subscriber.lines] == ["step 1 of 3 done", "step 2 of 3 done"]
    assert [(end["lines"], end.get("truncated", False)) for end in subscriber.ends] == [(2, False)]


async def test_an_attempt_that_prints_too_many_lines_stops_with_a_note_and_its_end_says_so(monkeypatch) -> None:
    monkeypatch.setattr(live_output, "MAX_LINES_PER_ATTEMPT", 3)
    subscriber = Subscriber()
    live = LiveOutput(subscriber, "run1", "step1", 1, set())  # type: ignore[arg-type]
    live(1, b"".join(b"line %d\n" % n for n in range(1, 6)))
    live(2, b"more\n")
    await live.close()
    assert [line["text"] for line in subscriber.lines] == ["line 1", "line 2", "line 3", live_output.STOPS_HERE]
    assert [(end["lines"], end["truncated"]) for end in subscriber.ends] == [(4, True)]


async def test_a_line_ending_with_a_secrets_beginning_waits_for_what_follows() -> None:
    subscriber = Subscriber()
    live = LiveOutput(subscriber, "run1", "step1", 1, {SECRET})  # type: ignore[arg-type]
    live(1, f"ok\nkey: {SECRET[:6]}\n".encode())
    await asyncio.sleep(0)                                        # let the publish that was started run
    assert [line["text"] for line in subscriber.lines] == ["ok"]
    await live.close()
    assert [line["text"] for line in subscriber.lines] == ["ok", f"key: {SECRET[:6]}"]


async def test_a_very_long_line_is_sent_in_pieces_none_ending_inside_a_secret() -> None:
    printed = ("x" * (MAX_PARTIAL_LINE - 5) + SECRET + "y" * 50).encode()
    sent = await stream([printed[:MAX_PARTIAL_LINE + 1], printed[MAX_PARTIAL_LINE + 1:]], {SECRET})
    assert len(sent.lines) == 2 and "***" in sent.text and SECRET[:5] not in sent.text
