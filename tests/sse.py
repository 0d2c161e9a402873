"""A small Server-Sent Events reader for tests: the messages as the browser would see them."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Message:
    event: str
    id: str | None
    data: Any


async def messages(response: aiohttp.ClientResponse) -> AsyncIterator[Message]:
    """Messages of an open SSE response, data decoded as JSON; pings (comments) skipped."""
    event, ident, data = "message", None, []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield Message(event, ident, json.loads("\n".join(data)))
            event, ident, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "id":
                ident = value
            elif name == "data":
                data.append(value)
