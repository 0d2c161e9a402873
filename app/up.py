"""`playbook up`: the whole engine on one machine, ready in seconds."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from nats.aio.client import Client as NATS

from app.root import ALL_SERVICES, DOORS, Running, configure_logging, serve
from events.commands import StartRun
from services.embedded import EmbeddedNats
from services.settings import EXAMPLES, Settings
from ui.cli.render import Follower
from ui.client import EngineClient

log = logging.getLogger("playbook")

DEMO_PLAYBOOK = EXAMPLES / "deploy-demo.yaml"


def up(settings: Settings, *, demo: bool, http_port: int, as_json: bool = False) -> int:
    configure_logging(settings, as_json)
    return asyncio.run(_up(settings, demo=demo, http_port=http_port, as_json=as_json))


async def _up(settings: Settings, *, demo: bool, http_port: int, as_json: bool) -> int:
    embedded = None
    if not settings.nats_url:
        embedded = EmbeddedNats(settings.home, settings.nats_port, settings.nats_server_bin)
        settings = replace(settings, nats_url=await embedded.start())
        log.info("embedded nats-server on %s, data in %s", settings.nats_url, embedded.home / "jetstream")
    settings = replace(settings, web_host="127.0.0.1", web_port=_free_or_any(http_port))

    async def ready(running: Running) -> None:
        web = running.doors["web"]
        log.info("dashboard on %s", web.url)
        log.info("engine ready; stop with Ctrl-C")
        if demo:
            asyncio.create_task(_run_demo(running.nc, web.url, as_json))

    try:
        await serve(settings, ALL_SERVICES, DOORS, ready=ready)
    finally:
        if embedded:
            embedded.stop()
    return 0


async def _run_demo(nc: NATS, web_url: str, as_json: bool) -> None:
    client = EngineClient(nc)
    reply = await client.send(StartRun(actor="demo", playbook=DEMO_PLAYBOOK.read_text(), source=str(DEMO_PLAYBOOK),
                                       parameters={"base_url": web_url}, environment="staging"))
    if not reply.accepted or reply.run_id is None:
        log.error("demo not started: %s", reply.error and reply.error.message)
        return
    log.info("demo run %s: follow it with `playbook events %s --follow`", reply.run_id, reply.run_id)
    follower = Follower(reply.run_id, as_json=as_json)
    async for seq, event in client.follow(reply.run_id):
        follower.show(seq, event)
    log.info("demo run %s %s; replay it with `playbook replay %s`", reply.run_id, follower.run.status, reply.run_id)


def _free_or_any(port: int) -> int:
    import socket
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            log.warning("port %d is taken; the web server takes a free one", port)
            return 0
    return port
