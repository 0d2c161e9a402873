"""When the server closes the services' connection for good (nats-py does not reconnect after a protocol
error), the engine process stops with a clear error instead of living on with nothing served."""
from __future__ import annotations

import asyncio

import pytest

from app.root import ALL_SERVICES, Running, serve
from services.errors import EngineUnavailable
from services.settings import Settings

pytestmark = pytest.mark.integration


async def test_a_connection_the_server_closed_stops_the_services_with_the_reason(settings: Settings) -> None:
    ready: asyncio.Future[Running] = asyncio.get_running_loop().create_future()

    async def on_ready(running: Running) -> None:
        ready.set_result(running)

    task = asyncio.create_task(serve(settings, ALL_SERVICES, ready=on_ready, stop=asyncio.Event()))
    running = await asyncio.wait_for(ready, 15)
    await running.nc.publish("pb." + "x" * 8000, b"")    # past the server's control line: it closes the connection
    with pytest.raises(EngineUnavailable, match="(?i)connection to NATS was closed.*control line"):
        await asyncio.wait_for(task, 15)
