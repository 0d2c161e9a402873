"""Requests answered in tasks of their own, a bounded number at once.

nats-py hands a subscription's messages over one at a time: answering each in its own
task keeps one slow request from queueing every other caller; past `at_once`, NATS holds
the rest. Replicas share the subject through a queue group.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription


class Answering:
    def __init__(self, nc: NATS, subject: str, queue: str, answer: Callable[[Msg], Coroutine[Any, Any, None]], *,
                 at_once: int = 64) -> None:
        self.nc, self.subject, self.queue, self.answer = nc, subject, queue, answer
        self._sub: Subscription | None = None
        self._answering: set[asyncio.Task[None]] = set()
        self._room = asyncio.Semaphore(at_once)

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.subject, queue=self.queue, cb=self._on_request)

    async def stop(self, grace: float = 10.0) -> None:
        """Take no new requests; let those being answered finish for `grace` seconds."""
        if self._sub is not None:
            await self._sub.unsubscribe()
        if self._answering:
            await asyncio.wait(self._answering, timeout=grace)

    async def _on_request(self, msg: Msg) -> None:
        await self._room.acquire()
        task = asyncio.create_task(self.answer(msg))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)
        task.add_done_callback(lambda _: self._room.release())
