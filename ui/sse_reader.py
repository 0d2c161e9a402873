"""Reading Server-Sent Events from an aiohttp response, as a browser's EventSource does
(for tests, benchmarks and any Python client of the web API)."""
from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp


async def sse_messages(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str | None, str]]:
    """(event, id, data) of each SSE message as it completes; comments (pings) skipped."""
    event, ident, data = "message", None, list[str]()
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield event, ident, "\n".join(data)
            event, ident, data = "message", None, list[str]()
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "id":
                ident = value
            elif name == "data":
                data.append(value)
