"""`python -m ui.web`: the web server alone (API, SSE, dashboard), for running replicas
beside an engine: `$NATS_URL`, `$PLAYBOOK_WEB_HOST` (default 127.0.0.1), `$PLAYBOOK_WEB_PORT` (8080)."""
from __future__ import annotations

import asyncio
import logging
import os
import signal

from services.embedded import nats_url
from ui.web.app import start_web


async def serve() -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    server = await start_web(os.environ.get("PLAYBOOK_WEB_HOST", "127.0.0.1"),
                             int(os.environ.get("PLAYBOOK_WEB_PORT", "8080")), nats_url())
    logging.getLogger("playbook").info("web on http://%s:%d", os.environ.get("PLAYBOOK_WEB_HOST", "127.0.0.1"), server.port)
    try:
        await stop.wait()
    finally:
        await server.close()


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("PLAYBOOK_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve())
