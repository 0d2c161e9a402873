"""Wiring: connect to NATS, start the chosen services, stop them cleanly on a signal."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

import nats
from nats.aio.client import Client as NATS

from services.approval.service import ApprovalService
from services.executor.service import Executor
from services.learning.config import LearningConfig
from services.learning.service import LearningService
from services.resilience.service import ResilienceService
from services.run.repository import RunRepository
from services.run.service import RunService
from services.store import EventStore

log = logging.getLogger("playbook")


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self, grace: float = 10.0) -> None: ...


def ack_wait() -> float:
    """How long a replica may go silent before its work is given to another."""
    return float(os.environ.get("PLAYBOOK_ACK_WAIT", "30"))


async def connect(url: str, name: str) -> NATS:
    async def on_error(err: Exception) -> None:
        log.warning("NATS: %s", err)

    return await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                              error_cb=on_error)


ALL_SERVICES = frozenset({"run", "executor", "approval", "resilience", "learning"})


def build(nc: NATS, store: EventStore, which: set[str]) -> list[Service]:
    runs = RunRepository(store)
    services: list[Service] = []
    if "run" in which:
        services.append(RunService(nc, runs, ack_wait=ack_wait()))
    if "executor" in which:
        services.append(Executor(nc, runs, ack_wait=ack_wait()))
    if "approval" in which:
        services.append(ApprovalService(nc, runs, ack_wait=ack_wait()))
    if "resilience" in which:
        services.append(ResilienceService(nc, runs, ack_wait=ack_wait()))
    if "learning" in which:
        services.append(LearningService(nc, store, LearningConfig.from_env()))
    return services


async def serve(url: str, which: set[str], *, ready: Callable[[NATS], Awaitable[None]] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run services until SIGINT/SIGTERM (or `stop` is set), then drain and close."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    nc = await connect(url, f"playbook-{'+'.join(sorted(which))}")
    store = EventStore(nc)
    await store.ensure_stream()
    services = build(nc, store, which)
    for service in services:
        await service.start()
    try:
        if ready is not None:
            await ready(nc)
        await stop.wait()
    finally:
        log.info("stopping")
        for service in reversed(services):
            await service.stop()
        await nc.drain()


def main(which: set[str]) -> None:
    logging.basicConfig(level=os.environ.get("PLAYBOOK_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from services.embedded import nats_url
    asyncio.run(serve(nats_url(), which))
