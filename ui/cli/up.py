"""`playbook up`: the whole engine on one machine, ready in seconds."""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from nats.aio.client import Client as NATS

from events.commands import StartRun
from services.app import ALL_SERVICES, serve
from services.embedded import EmbeddedNats, playbook_home
from ui.cli.render import Follower
from ui.client import EngineClient
from ui.web.app import WebServer, start_web

log = logging.getLogger("playbook")

DEMO_PLAYBOOK = Path(__file__).resolve().parents[2] / "examples" / "deploy-demo.yaml"


def up(*, demo: bool, http_port: int) -> int:
    logging.basicConfig(level=os.environ.get("PLAYBOOK_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_up(demo=demo, http_port=http_port))


async def _up(*, demo: bool, http_port: int) -> int:
    embedded = None
    url = os.environ.get("NATS_URL")
    if not url:
        embedded = EmbeddedNats(playbook_home())
        url = await embedded.start()
        log.info("embedded nats-server on %s, data in %s", url, embedded.home / "jetstream")
    try:
        web: list[WebServer] = []

        async def ready(nc: NATS) -> None:
            site = await start_web("127.0.0.1", _free_or_any(http_port), url)
            web.append(site)
            log.info("dashboard on http://127.0.0.1:%d", site.port)
            log.info("engine ready; stop with Ctrl-C")
            if demo:
                asyncio.create_task(_run_demo(nc, site.port))

        try:
            await serve(url, set(ALL_SERVICES), ready=ready)
        finally:
            for site in web:
                await site.close()
    finally:
        if embedded:
            embedded.stop()
    return 0


async def _run_demo(nc: NATS, port: int) -> None:
    client = EngineClient(nc)
    reply = await client.send(StartRun(actor="demo", playbook=DEMO_PLAYBOOK.read_text(), source=str(DEMO_PLAYBOOK),
                                       parameters={"base_url": f"http://127.0.0.1:{port}"}, environment="staging"))
    if not reply.accepted:
        log.error("demo not started: %s", reply.error and reply.error.message)
        return
    print(f"demo run {reply.run_id}: follow it with `playbook events {reply.run_id} --follow`", flush=True)
    follower = Follower(reply.run_id)
    async for seq, event in client.follow(reply.run_id):
        follower.show(seq, event)
    print(f"demo run {reply.run_id} {follower.run.status}; replay it with `playbook replay {reply.run_id}`", flush=True)


def _free_or_any(port: int) -> int:
    import socket
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            log.warning("port %d is taken; the web server takes a free one", port)
            return 0
    return port
