"""SSE messages for tests, their data decoded as JSON."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from ui.sse_reader import sse_messages


@dataclass(frozen=True)
class Message:
    event: str
    id: str | None
    data: Any


async def messages(response: aiohttp.ClientResponse) -> AsyncIterator[Message]:
    async for event, ident, data in sse_messages(response):
        yield Message(event, ident, json.loads(data))
